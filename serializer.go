package eventstream

import (
	"encoding/json"
	"fmt"

	"github.com/eventstream-go/eventstream/internal/wire"
)

// Serializer turns event payloads into bytes and back.
//
// Serializers outside the standard library live in their own packages (for
// protobuf: package serializer/protobuf), so that importing eventstream links
// only what a program uses.
//
// ContentType names the encoding (a MIME type such as "application/json"); the
// distributed bus writes it into every envelope, so a subscriber whose
// Serializer reads another content type gets a clear ErrContentType instead of
// garbage. Implementations must be safe for concurrent use.
type Serializer interface {
	// ContentType is the MIME type of what Marshal produces.
	ContentType() string
	// Marshal encodes v.
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, which must be a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// Validator is an optional Serializer interface. The distributed bus uses it to
// decide whether a message that is not a CloudEvent (a record written by
// another producer) is a bare payload this Serializer can read; without it
// any such message is accepted as a bare payload.
type Validator interface {
	// Valid reports whether data is a well-formed encoding.
	Valid(data []byte) bool
}

// JSONSerializer encodes with encoding/json. It is the default Serializer.
type JSONSerializer struct{}

// ContentType returns "application/json".
func (JSONSerializer) ContentType() string { return "application/json" }

// Marshal encodes v with json.Marshal.
func (JSONSerializer) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes with json.Unmarshal.
func (JSONSerializer) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Valid reports whether data is valid JSON.
func (JSONSerializer) Valid(data []byte) bool { return json.Valid(data) }

// RawSerializer passes bytes through unchanged: Marshal accepts []byte,
// string and json.RawMessage (a *[]byte or *string too), Unmarshal fills a
// *[]byte (with a copy), a *string, a *json.RawMessage or a *any (with a
// []byte). Other types are an error wrapping ErrDecode, never a silent
// re-encoding.
type RawSerializer struct{}

// ContentType returns "application/octet-stream".
func (RawSerializer) ContentType() string { return "application/octet-stream" }

// Marshal returns the bytes of a []byte, string or json.RawMessage payload.
func (RawSerializer) Marshal(v any) ([]byte, error) {
	switch p := v.(type) {
	case []byte:
		return p, nil
	case string:
		return []byte(p), nil
	case json.RawMessage:
		return p, nil
	case *[]byte:
		if p != nil {
			return *p, nil
		}
	case *string:
		if p != nil {
			return []byte(*p), nil
		}
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("eventstream: RawSerializer cannot marshal %T: want []byte or string", v)
}

// Unmarshal stores data in v.
func (RawSerializer) Unmarshal(data []byte, v any) error {
	switch p := v.(type) {
	case *[]byte:
		*p = append([]byte(nil), data...)
	case *string:
		*p = string(data)
	case *json.RawMessage:
		*p = append(json.RawMessage(nil), data...)
	case *any:
		*p = append([]byte(nil), data...)
	default:
		return fmt.Errorf("%w: RawSerializer cannot unmarshal into %T: want *[]byte or *string", ErrDecode, v)
	}
	return nil
}

// sameContentType reports whether two MIME types name the same encoding,
// ignoring parameters and case, and treating "+json" suffixes as JSON.
func sameContentType(a, b string) bool { return wire.SameContentType(a, b) }
