package redis

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"github.com/eventstream-go/eventstream/internal/headerset"
	goredis "github.com/redis/go-redis/v9"
)

// The subscription reads XREADGROUP and XAUTOCLAIM replies as raw RESP
// (go-redis RawCmd) and parses them here, instead of through go-redis'
// XMessage, which allocates a map and copies every value twice per entry.
// Here the values of a batch stay in the one reply buffer they arrived in,
// the IDs share one string and the Messages one slice.

// errReply is Redis' error reply, as go-redis reports it.
type errReply string

func (e errReply) Error() string { return string(e) }

// errProtocol is wrapped by the errors of a reply that cannot be parsed.
var errProtocol = errors.New("redis: unexpected reply")

// respReader reads one RESP2 or RESP3 reply held whole in b.
type respReader struct {
	b   []byte
	off int
}

// line returns the type byte and the rest of the next line.
func (r *respReader) line() (byte, []byte, error) {
	rest := r.b[r.off:]
	for i := 1; i+1 < len(rest); i++ {
		if rest[i] == '\r' && rest[i+1] == '\n' {
			r.off += i + 2
			return rest[0], rest[1:i], nil
		}
	}
	return 0, nil, fmt.Errorf("%w: truncated", errProtocol)
}

func atoi(b []byte) (int, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// header reads the next line, turning error replies into errors.
func (r *respReader) header() (byte, []byte, error) {
	t, l, err := r.line()
	if err != nil {
		return 0, nil, err
	}
	switch t {
	case '-':
		return 0, nil, errReply(l)
	case '!':
		b, err := r.payload(l)
		if err != nil {
			return 0, nil, err
		}
		return 0, nil, errReply(b)
	}
	return t, l, nil
}

// payload reads the body of a bulk string whose length line is l.
func (r *respReader) payload(l []byte) ([]byte, error) {
	n, ok := atoi(l)
	if !ok || n < 0 || len(r.b)-r.off < n+2 {
		return nil, fmt.Errorf("%w: bad bulk length %q", errProtocol, l)
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n + 2
	return b, nil
}

// aggregate reads the header of an array or map and returns its number of
// elements (a map of n pairs has 2n); null is false for a null reply.
func (r *respReader) aggregate() (n int, null bool, err error) {
	t, l, err := r.header()
	if err != nil {
		return 0, false, err
	}
	switch t {
	case '_':
		return 0, true, nil
	case '*', '%', '~':
		n, ok := atoi(l)
		if !ok {
			return 0, false, fmt.Errorf("%w: bad length %q", errProtocol, l)
		}
		if n < 0 {
			return 0, true, nil
		}
		if t == '%' {
			n *= 2
		}
		if n > (len(r.b)-r.off)/3 { // every element takes at least 3 bytes ("_\r\n")
			return 0, false, fmt.Errorf("%w: %d elements in a reply of %d bytes", errProtocol, n, len(r.b))
		}
		return n, false, nil
	}
	return 0, false, fmt.Errorf("%w: %q where an array was expected", errProtocol, t)
}

// str reads a bulk or simple string; null is true for a null string.
func (r *respReader) str() (b []byte, null bool, err error) {
	t, l, err := r.header()
	if err != nil {
		return nil, false, err
	}
	switch t {
	case '$':
		if len(l) > 0 && l[0] == '-' {
			return nil, true, nil
		}
		b, err := r.payload(l)
		return b, false, err
	case '+':
		return l[:len(l):len(l)], false, nil
	case '_':
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("%w: %q where a string was expected", errProtocol, t)
}

// skip steps over the next value, whatever it is.
func (r *respReader) skip() error {
	t, l, err := r.header()
	if err != nil {
		return err
	}
	switch t {
	case '$', '=':
		if len(l) > 0 && l[0] == '-' {
			return nil
		}
		_, err := r.payload(l)
		return err
	case '*', '%', '~', '>', '|':
		n, ok := atoi(l)
		if !ok {
			return fmt.Errorf("%w: bad length %q", errProtocol, l)
		}
		if t == '%' || t == '|' {
			n *= 2
		}
		for range n {
			if err := r.skip(); err != nil {
				return err
			}
		}
		if t == '|' { // an attribute precedes the value it describes
			return r.skip()
		}
	}
	return nil
}

// rawField is one field of a stream entry.
type rawField struct{ name, value []byte }

// batch collects the entries of one reply. Its buffers are reused from
// one reply to the next; the messages are new every time.
type batch struct {
	msgs   []Message
	idEnds []int      // end of each entry's ID in ids
	ids    []byte     // the IDs, back to back
	fields []rawField // the fields of the entry being decoded
	intern map[string]string

	// last is the header set of the last entry that had headers; sets and
	// hdrs are slabs the header sets of the current reply are cut from
	// (never reused for another reply: its messages keep them).
	last *headerset.Set
	sets []headerset.Set
	hdrs []headerset.Header
}

// headerSet returns the header set of the n header fields among fields:
// the last entry's set when the headers are the same, in the same order (a
// producer's headers rarely change from one entry to the next). Sets are
// never modified once returned (but for the map built once, see
// headerset.Set.Map), so messages can share them.
func (b *batch) headerSet(fields []rawField, n int) *headerset.Set {
	if last := b.last; last != nil && len(last.List) == n {
		i := 0
		for _, f := range fields {
			if !isHeader(f.name) {
				continue
			}
			if string(f.name[len(headerPrefix):]) != last.List[i].Name || string(f.value) != last.List[i].Value {
				break
			}
			i++
		}
		if i == n {
			return last
		}
	}
	if cap(b.hdrs)-len(b.hdrs) < n { // a new slab; the slices cut from the old one stay valid
		b.hdrs = make([]headerset.Header, 0, max(2*cap(b.hdrs), 64, n))
	}
	start := len(b.hdrs)
	for _, f := range fields {
		if isHeader(f.name) {
			b.hdrs = append(b.hdrs, headerset.Header{Name: b.str(f.name[len(headerPrefix):]), Value: b.str(f.value)})
		}
	}
	if len(b.sets) == cap(b.sets) {
		b.sets = make([]headerset.Set, 0, max(2*cap(b.sets), 16))
	}
	b.sets = b.sets[:len(b.sets)+1]
	hs := &b.sets[len(b.sets)-1]
	hs.List = b.hdrs[start:len(b.hdrs):len(b.hdrs)]
	b.last = hs
	return hs
}

// maxInterned bounds batch.intern; longer strings are not interned.
const (
	maxInterned    = 1024
	maxInternedLen = 64
)

// str returns v as a string, shared with earlier entries when it was seen
// before: header names and most header values (content type, ...) repeat
// from entry to entry. A string that is not interned (too long, or the
// table is full: unique values such as the bus's binary-mode ce_id) is a
// view of v, which the reply buffer holds and nothing modifies (see
// Message): no copy per entry.
func (b *batch) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	if len(v) > maxInternedLen {
		return unsafe.String(unsafe.SliceData(v), len(v))
	}
	if s, ok := b.intern[string(v)]; ok {
		return s
	}
	if len(b.intern) >= maxInterned {
		return unsafe.String(unsafe.SliceData(v), len(v))
	}
	if b.intern == nil {
		b.intern = make(map[string]string)
	}
	s := string(v) // a copy: the table outlives the reply
	b.intern[s] = s
	return s
}

func (b *batch) reset() {
	b.msgs = nil
	b.idEnds = b.idEnds[:0]
	b.ids = b.ids[:0]
	clear(b.fields[:cap(b.fields)]) // let go of the previous reply
	b.fields = b.fields[:0]
	b.sets, b.hdrs = nil, nil // the messages own them
}

// entries reads an array of stream entries ([id, [field, value, ...]]) and
// appends them to b. Null entries (deleted, in some Redis versions'
// XAUTOCLAIM replies) are skipped.
func (b *batch) entries(r *respReader, topic string) error {
	n, null, err := r.aggregate()
	if err != nil || null {
		return err
	}
	if b.msgs == nil {
		b.msgs = make([]Message, 0, n)
	}
	for range n {
		parts, null, err := r.aggregate()
		if err != nil {
			return err
		}
		if null {
			continue
		}
		if parts < 2 {
			return fmt.Errorf("%w: stream entry of %d elements", errProtocol, parts)
		}
		id, _, err := r.str()
		if err != nil {
			return err
		}
		nf, null, err := r.aggregate()
		if err != nil {
			return err
		}
		b.fields = b.fields[:0]
		if !null {
			if nf%2 != 0 {
				return fmt.Errorf("%w: odd number of entry fields", errProtocol)
			}
			for range nf / 2 {
				name, _, err := r.str()
				if err != nil {
					return err
				}
				value, _, err := r.str()
				if err != nil {
					return err
				}
				b.fields = append(b.fields, rawField{name, value})
			}
		}
		for range parts - 2 { // delivery metadata of newer servers
			if err := r.skip(); err != nil {
				return err
			}
		}
		b.add(topic, id)
	}
	return nil
}

// add appends the entry id with the fields in b.fields.
func (b *batch) add(topic string, id []byte) {
	b.msgs = append(b.msgs, Message{topic: topic})
	decodeFields(&b.msgs[len(b.msgs)-1], id, b.fields, b)
	b.ids = append(b.ids, id...)
	b.idEnds = append(b.idEnds, len(b.ids))
}

// addXMessages appends entries parsed by go-redis (the cluster client's
// path, see subscription.readNew).
func (b *batch) addXMessages(topic string, xs []goredis.XMessage) []Message {
	b.reset()
	b.msgs = make([]Message, 0, len(xs))
	for _, x := range xs {
		b.fields = b.fields[:0]
		for k, v := range x.Values {
			var value []byte
			switch v := v.(type) {
			case string:
				value = []byte(v)
			case []byte:
				value = v
			}
			b.fields = append(b.fields, rawField{[]byte(k), value})
		}
		b.add(topic, []byte(x.ID))
	}
	return b.finish()
}

// replyBuffer receives a raw reply from go-redis (RawWriteToCmd) in one
// buffer, sized from the previous replies, that grows by doubling. (go-redis'
// RawCmd grows its buffer by a quarter at a time, copying a large reply
// several times: measured slower even than the small allocation per string
// that streaming costs.)
type replyBuffer struct {
	b []byte
}

// reserve makes room for n more bytes.
func (w *replyBuffer) reserve(n int) {
	if cap(w.b)-len(w.b) >= n {
		return
	}
	nb := make([]byte, len(w.b), max(2*cap(w.b), len(w.b)+n, 4096))
	copy(nb, w.b)
	w.b = nb
}

// Write appends p.
func (w *replyBuffer) Write(p []byte) (int, error) {
	w.reserve(len(p))
	w.b = append(w.b, p...)
	return len(p), nil
}

// ReadFrom appends what r holds, reading straight into the buffer.
func (w *replyBuffer) ReadFrom(r io.Reader) (int64, error) {
	lr, _ := r.(*io.LimitedReader)
	var total int64
	for {
		need := 512
		if lr != nil {
			if lr.N <= 0 {
				return total, nil
			}
			need = int(min(lr.N, 1<<20))
		}
		w.reserve(need)
		n, err := r.Read(w.b[len(w.b):cap(w.b)])
		w.b = w.b[:len(w.b)+n]
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// finish gives the messages their IDs, which share one string.
func (b *batch) finish() []Message {
	ids := string(b.ids)
	start := 0
	for i := range b.msgs {
		b.msgs[i].id = ids[start:b.idEnds[i]]
		start = b.idEnds[i]
	}
	msgs := b.msgs
	b.reset()
	return msgs
}

// parseReadGroup parses an XREADGROUP reply of one stream: nil (timeout),
// a RESP2 array of [stream, entries] or a RESP3 map of stream to entries.
func (b *batch) parseReadGroup(raw []byte, topic string) ([]Message, error) {
	b.reset()
	r := &respReader{b: raw}
	n, null, err := r.aggregate()
	if err != nil || null {
		return nil, err
	}
	isMap := len(raw) > 0 && raw[0] == '%'
	for i := 0; i < n; i++ {
		if !isMap {
			k, null, err := r.aggregate()
			if err != nil {
				return nil, err
			}
			if null || k != 2 {
				return nil, fmt.Errorf("%w: stream reply of %d elements", errProtocol, k)
			}
		} else {
			i++ // a key and its value
		}
		if _, _, err := r.str(); err != nil {
			return nil, err
		}
		if err := b.entries(r, topic); err != nil {
			return nil, err
		}
	}
	return b.finish(), nil
}

// parseAutoClaim parses an XAUTOCLAIM reply: [next start, entries,
// deleted IDs (Redis 7)].
func (b *batch) parseAutoClaim(raw []byte, topic string) (msgs []Message, next string, deleted []string, err error) {
	b.reset()
	r := &respReader{b: raw}
	n, null, err := r.aggregate()
	if err != nil {
		return nil, "", nil, err
	}
	if null || n < 2 {
		return nil, "", nil, fmt.Errorf("%w: XAUTOCLAIM reply of %d elements", errProtocol, n)
	}
	nb, _, err := r.str()
	if err != nil {
		return nil, "", nil, err
	}
	if err := b.entries(r, topic); err != nil {
		return nil, "", nil, err
	}
	if n > 2 {
		d, null, err := r.aggregate()
		if err != nil {
			return nil, "", nil, err
		}
		for i := 0; i < d && !null; i++ {
			id, _, err := r.str()
			if err != nil {
				return nil, "", nil, err
			}
			deleted = append(deleted, string(id))
		}
		for range n - 3 {
			if err := r.skip(); err != nil {
				return nil, "", nil, err
			}
		}
	}
	return b.finish(), string(nb), deleted, nil
}
