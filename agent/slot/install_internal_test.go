package slot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// The read-back stage is the last line of defence: a device that lost or
// changed the bytes after fsync must fail the install.
func TestVerifyReadBack(t *testing.T) {
	data := bytes.Repeat([]byte("graft"), 300000)
	sum := sha256.Sum256(data)
	img := Image{Size: int64(len(data)), SHA256: sum[:], Compression: None}
	tests := []struct {
		name    string
		content []byte
		wantErr error
	}{
		{"intact", data, nil},
		{"intact with a longer tail", append(bytes.Clone(data), 1, 2, 3), nil},
		{"one byte changed", append(bytes.Clone(data[:1000]), append([]byte{'X'}, data[1001:]...)...), ErrHashMismatch},
		{"shorter", data[:len(data)-10], ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "slot")
			if err := os.WriteFile(p, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			err = verify(context.Background(), f, p, img, make([]byte, blockSize))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var he *HashError
			if errors.As(err, &he) && he.Stage != "read-back" {
				t.Fatalf("stage = %q", he.Stage)
			}
		})
	}
}
