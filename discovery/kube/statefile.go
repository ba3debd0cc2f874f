package kube

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// FileStore keeps each member's state in Dir/<member>.json, written
// atomically: a temporary file in Dir, synced, then renamed over the old one,
// so a crash leaves the old state or the new one, never half of either.
type FileStore struct {
	Dir string
	// MaxBytes bounds one member's file (0: DefaultStateMaxBytes); a larger
	// state is neither written nor read.
	MaxBytes int
}

func (f *FileStore) max() int {
	if f.MaxBytes > 0 {
		return f.MaxBytes
	}
	return DefaultStateMaxBytes
}

// Path is the file of a member's state.
func (f *FileStore) Path(member string) string { return filepath.Join(f.Dir, member+".json") }

// Load reads a member's state; (nil, nil) when it has no file.
func (f *FileStore) Load(member string) (*MemberState, error) {
	if err := checkMemberName(member); err != nil {
		return nil, err
	}
	path := f.Path(member)
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &StateError{Origin: path, Reason: StateIO, Err: err}
	}
	defer file.Close()
	// Read one byte past the bound to tell a file at the bound from a larger one.
	b, err := io.ReadAll(io.LimitReader(file, int64(f.max())+1))
	if err != nil {
		return nil, &StateError{Origin: path, Reason: StateIO, Err: err}
	}
	return DecodeState(path, member, b, f.max())
}

// Save writes a member's state, replacing the old one atomically.
func (f *FileStore) Save(s *MemberState) error {
	if err := checkMemberName(s.Member); err != nil {
		return err
	}
	b, err := EncodeState(s, f.max())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return fmt.Errorf("member state directory: %w", err)
	}
	path := f.Path(s.Member)
	tmp, err := os.CreateTemp(f.Dir, "."+s.Member+".*.tmp")
	if err != nil {
		return fmt.Errorf("member state %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(b); err != nil {
		return fmt.Errorf("member state %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("member state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("member state %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		done = true
		return fmt.Errorf("member state %s: %w", path, err)
	}
	done = true
	// Make the rename itself durable.
	if d, err := os.Open(f.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
