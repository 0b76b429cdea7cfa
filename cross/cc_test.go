package cross

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestToolNames(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("names below are for an amd64 build machine")
	}
	tests := []struct {
		goarch, tool, want string
	}{
		{"amd64", "gcc", "gcc"},
		{"amd64", "objdump", "objdump"},
		{"arm64", "gcc", "aarch64-linux-gnu-gcc"},
		{"arm64", "objdump", "aarch64-linux-gnu-objdump"},
		{"arm", "gcc", "arm-linux-gnueabihf-gcc"},
		{"arm", "readelf", "arm-linux-gnueabihf-readelf"},
	}
	for _, tt := range tests {
		t.Run(tt.goarch+"/"+tt.tool, func(t *testing.T) {
			got, err := Tool(tt.goarch, tt.tool)
			if err != nil || got != tt.want {
				t.Errorf("Tool(%q, %q) = %q, %v; want %q", tt.goarch, tt.tool, got, err, tt.want)
			}
			if tt.tool == "gcc" {
				if cc, err := CC(tt.goarch); err != nil || cc != tt.want {
					t.Errorf("CC(%q) = %q, %v; want %q", tt.goarch, cc, err, tt.want)
				}
			}
		})
	}
}

func TestToolUnknown(t *testing.T) {
	for _, goarch := range []string{"", "riscv64", "386", "x86_64"} {
		if _, err := CC(goarch); !errors.Is(err, ErrUnknownArch) {
			t.Errorf("CC(%q) error = %v, want ErrUnknownArch", goarch, err)
		}
	}
	if _, err := Tool("arm64", ""); err == nil {
		t.Error("Tool with an empty name succeeded")
	}
}

// TestCCBuilds compiles and links a C program with each compiler and
// checks the ELF machine of the result.
func TestCCBuilds(t *testing.T) {
	src := filepath.Join(t.TempDir(), "hello.c")
	if err := os.WriteFile(src, []byte("int puts(const char *);\nint main(void) { return puts(\"hello\") < 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		goarch  string
		machine elf.Machine
	}{
		{"amd64", elf.EM_X86_64},
		{"arm64", elf.EM_AARCH64},
		{"arm", elf.EM_ARM},
	}
	for _, tt := range tests {
		t.Run(tt.goarch, func(t *testing.T) {
			cc, err := CC(tt.goarch)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := exec.LookPath(cc); err != nil {
				t.Skipf("%s not installed (make deps installs it)", cc)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out := filepath.Join(t.TempDir(), "hello")
			if b, err := exec.CommandContext(ctx, cc, "-O2", "-o", out, src).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", cc, err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.Machine != tt.machine {
				t.Errorf("%s built a %v binary, want %v", cc, f.Machine, tt.machine)
			}
		})
	}
}
