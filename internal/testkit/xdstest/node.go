package xdstest

import (
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Node is a proxy's node: its id, and metadata given as key, value pairs
// (a later pair wins over an earlier one with the same key).
func Node(id string, meta ...string) *core.Node {
	md := map[string]any{}
	for i := 0; i+1 < len(meta); i += 2 {
		md[meta[i]] = meta[i+1]
	}
	s, err := structpb.NewStruct(md)
	if err != nil {
		panic(err) // strings always convert
	}
	return &core.Node{Id: id, Metadata: s}
}
