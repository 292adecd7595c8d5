// Package headerset holds the broker headers of received messages the way
// the adapters keep them: a list in the broker's order, shared read-only by
// the consecutive messages that have the same headers, and the map a
// message's Headers method returns, built only when first asked for.
package headerset

import "sync"

// Header is one broker header.
type Header struct{ Name, Value string }

// Set is the headers of one or more messages. List is never modified once
// the set was handed to a message; the map is built once. A nil *Set holds
// no headers.
type Set struct {
	List []Header
	once sync.Once
	m    map[string]string
}

// Len returns the number of entries (0 for nil).
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.List)
}

// At returns entry i, 0 <= i < s.Len().
func (s *Set) At(i int) (name, value string) {
	h := s.List[i]
	return h.Name, h.Value
}

// Map returns the entries as a map, the last entry of a name winning; nil
// for a nil set. The map is shared by every message of the set: it must not
// be modified.
func (s *Set) Map() map[string]string {
	if s == nil {
		return nil
	}
	s.once.Do(func() {
		s.m = make(map[string]string, len(s.List))
		for _, h := range s.List {
			s.m[h.Name] = h.Value
		}
	})
	return s.m
}
