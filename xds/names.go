package xds

import (
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
)

func ResourceName(r types.Resource) string { return cachev3.GetResourceName(r) }

// ShortType names a type in prose, in error messages and /debug/syncz:
// "cluster", "assignment", "listener", "route". Metrics and logs use
// discovery.XDSTypeName.
func ShortType(typeURL string) string {
	switch typeURL {
	case TypeURLs[0]:
		return "cluster"
	case TypeURLs[1]:
		return "assignment"
	case TypeURLs[2]:
		return "listener"
	case TypeURLs[3]:
		return "route"
	}
	return typeURL[strings.LastIndexByte(typeURL, '.')+1:]
}

func unmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }
