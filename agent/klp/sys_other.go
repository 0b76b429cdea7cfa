//go:build !linux

package klp

import "fmt"

func loadModule(string, []byte, string) error { return fmt.Errorf("%w: not Linux", ErrUnsupported) }

func unloadModule(string) error { return fmt.Errorf("%w: not Linux", ErrUnsupported) }

func retryUnload(error) bool { return false }

func uname() (string, error) { return "", fmt.Errorf("%w: not Linux", ErrUnsupported) }

type kmsgReader struct{}

func openKmsg(string) (*kmsgReader, error) { return nil, fmt.Errorf("%w: not Linux", ErrUnsupported) }

func (r *kmsgReader) read() []string { return nil }

func (r *kmsgReader) records() []kmsgRecord { return nil }

func (r *kmsgReader) close() {}

func monotonicUsec() int64 { return 0 }
