package bootstrap

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// validateDeep runs the proto validation rules of m and of every message
// packed in an Any inside it, to any depth: Bootstrap.ValidateAll checks an
// Any's type URL but not what it holds (an HTTP connection manager, a
// resource monitor's config, ...). ValidateAll already descends into plain
// sub-messages, so only the root and the unpacked messages are validated.
func validateDeep(m proto.Message) error {
	return eachMessage(m, func(msg proto.Message, root bool) error {
		v, ok := msg.(interface{ ValidateAll() error })
		if !root || !ok {
			return nil
		}
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
		}
		return nil
	})
}

// eachMessage calls f on m and on every message inside it, those packed in
// an Any unpacked, until f or an unpacking fails; root is set for m and for
// each message unpacked from an Any.
func eachMessage(m proto.Message, f func(msg proto.Message, root bool) error) error {
	var err error
	var walk func(msg protoreflect.Message, root bool)
	walk = func(msg protoreflect.Message, root bool) {
		if err != nil {
			return
		}
		if a, ok := msg.Interface().(*anypb.Any); ok {
			inner, uerr := a.UnmarshalNew()
			if uerr != nil {
				err = fmt.Errorf("%s: %w", a.GetTypeUrl(), uerr)
				return
			}
			walk(inner.ProtoReflect(), true)
			return
		}
		if err = f(msg.Interface(), root); err != nil {
			return
		}
		msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message(), false)
				}
			case fd.IsMap() && fd.MapValue().Message() != nil:
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), false)
					return err == nil
				})
			case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
				walk(v.Message(), false)
			}
			return err == nil
		})
	}
	walk(m.ProtoReflect(), true)
	return err
}
