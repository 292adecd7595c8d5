// Package protobuf provides an eventstream.Serializer for protocol buffers,
// kept out of the root package so that only programs that use it link
// google.golang.org/protobuf.
//
//	cfg := eventstream.DefaultDistributedConfig()
//	cfg.Distributed.Serializer = protobuf.Serializer{}
package protobuf

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/eventstream-go/eventstream"
)

// Serializer encodes proto.Message payloads in the protobuf binary format,
// content type "application/protobuf". The zero value is ready to use and
// safe for concurrent use.
type Serializer struct{}

var _ eventstream.Serializer = Serializer{}

// ContentType returns "application/protobuf".
func (Serializer) ContentType() string { return "application/protobuf" }

// Marshal encodes v, which must be a proto.Message.
func (Serializer) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("protobuf: cannot marshal %T: not a proto.Message", v)
	}
	return proto.Marshal(m)
}

// Unmarshal decodes data into v, which must be a proto.Message. Errors wrap
// eventstream.ErrDecode, so the bus does not retry them.
func (Serializer) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("%w: protobuf: cannot unmarshal into %T: not a proto.Message", eventstream.ErrDecode, v)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("%w: protobuf: %w", eventstream.ErrDecode, err)
	}
	return nil
}
