package userpatch

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/graft-dev/graft/manifest"
)

// outOfScope says why process pid is outside sc ("" when it is inside).
// The default scope (the zero value) takes in every process of the
// agent's own PID namespace, of any user and executable; processes of
// other PID namespaces (containers) are left alone unless the scope says
// otherwise.
func outOfScope(pid int, sc manifest.Scope) string {
	dir := filepath.Join(procDir, strconv.Itoa(pid))
	if !sc.OtherPIDNamespaces {
		mine, err1 := os.Readlink(filepath.Join(procDir, "self", "ns", "pid"))
		theirs, err2 := os.Readlink(filepath.Join(dir, "ns", "pid"))
		if err1 == nil && (err2 != nil || mine != theirs) {
			return "in another PID namespace"
		}
	}
	if len(sc.UIDs) > 0 {
		uid, ok := realUID(dir)
		if !ok || !slices.Contains(sc.UIDs, uid) {
			return fmt.Sprintf("uid %d is not in the scope's uids", uid)
		}
	}
	if len(sc.Executables) > 0 {
		exe, _ := os.Readlink(filepath.Join(dir, "exe"))
		exe = strings.TrimSuffix(exe, " (deleted)")
		if !slices.ContainsFunc(sc.Executables, func(g string) bool { ok, _ := path.Match(g, exe); return ok }) {
			return fmt.Sprintf("executable %s matches none of the scope's", exe)
		}
	}
	if len(sc.Units) > 0 {
		cg := cgroupOf(dir)
		if !slices.ContainsFunc(sc.Units, func(u string) bool { return unitMatch(u, cg) }) {
			return fmt.Sprintf("cgroup %s matches none of the scope's units", cg)
		}
	}
	return ""
}

// unitMatch: a unit name matches a cgroup path ending in it; a glob (any
// pattern with a "/") matches the path itself.
func unitMatch(unit, cg string) bool {
	if strings.Contains(unit, "/") {
		ok, _ := path.Match(unit, cg)
		return ok
	}
	return cg == "/"+unit || strings.HasSuffix(cg, "/"+unit)
}

// cgroupOf is the process's cgroup v2 path ("0::PATH"), or its first
// v1 hierarchy's path.
func cgroupOf(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return ""
	}
	first := ""
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		if first == "" {
			first = parts[2]
		}
	}
	return first
}

func realUID(dir string) (uint32, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Uid:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, err := strconv.ParseUint(f[0], 10, 32)
				return uint32(n), err == nil
			}
		}
	}
	return 0, false
}

// ScopeText describes a scope for status output.
func ScopeText(sc manifest.Scope) string {
	var parts []string
	if sc.OtherPIDNamespaces {
		parts = append(parts, "all PID namespaces")
	} else {
		parts = append(parts, "the agent's PID namespace")
	}
	if len(sc.Executables) > 0 {
		parts = append(parts, "executables "+strings.Join(sc.Executables, ","))
	}
	if len(sc.Units) > 0 {
		parts = append(parts, "units "+strings.Join(sc.Units, ","))
	}
	if len(sc.UIDs) > 0 {
		u := make([]string, len(sc.UIDs))
		for i, v := range sc.UIDs {
			u[i] = strconv.FormatUint(uint64(v), 10)
		}
		parts = append(parts, "uids "+strings.Join(u, ","))
	}
	if len(parts) == 1 {
		parts = append(parts, "every user and executable")
	}
	return strings.Join(parts, "; ")
}
