package kubetest

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// Launch is Start outside a test (a benchmark binary): it starts one member
// cluster per name, in parallel, and the caller owns them. stop stops every
// cluster that started and removes their folders; it is never nil, and must
// be called even when err is not nil.
func Launch(names ...string) (clusters []*Cluster, stop func() error, err error) {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, func() error { return nil }, err
	}
	started := make([]*Cluster, len(names))
	stop = func() error {
		var errs []error
		for _, c := range started {
			if c != nil {
				if err := c.stop(); err != nil {
					errs = append(errs, fmt.Errorf("stop cluster %s: %w", c.Name, err))
				}
			}
		}
		return errors.Join(append(errs, os.RemoveAll(dir))...)
	}
	assets, err := Assets()
	if err != nil {
		return nil, stop, err
	}
	crds, err := mcsCRDs()
	if err != nil {
		return nil, stop, err
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		sub, err := os.MkdirTemp(dir, name+"-")
		if err != nil {
			return nil, stop, err
		}
		wg.Go(func() {
			started[i], errs[i] = start(name, assets, crds, sub, Options{})
			if errs[i] != nil {
				errs[i] = fmt.Errorf("start cluster %s: %w", name, errs[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, stop, err
	}
	return started, stop, nil
}
