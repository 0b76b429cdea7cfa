package patchbuild

// Report says what Build put into a bundle and what it checked.
type Report struct {
	Name    string `json:"name"`
	Arch    string `json:"arch"`
	Soname  string `json:"soname"`
	BuildID string `json:"build_id"` // hex
	// Replaced are the target functions the bundle redirects.
	Replaced []FuncReport `json:"replaced"`
	// New are functions of the fixed build only, carried in the patch.
	New []string `json:"new,omitempty"`
	// Copied are unchanged static functions the target has no symbol
	// for, carried in the patch.
	Copied []string `json:"copied,omitempty"`
	// Rodata are the read-only data sections copied into the patch.
	Rodata []string `json:"rodata,omitempty"`
	// NewData are writable objects new in the fixed build (Data, BSS).
	NewData  []string `json:"new_data,omitempty"`
	GOTSlots int      `json:"got_slots"`
	// Veneers are the stubs that calls and jumps from the patch to the
	// target's functions go through, one per function (and, on ARM, per
	// caller state): through the target's GOT entry for a function it
	// imports, through a slot of the patch's GOT (counted in GOTSlots)
	// for its own.
	Veneers  int            `json:"veneers"`
	Relocs   map[string]int `json:"relocs"` // by type name
	ToTarget int            `json:"relocs_target"`
	ToPatch  int            `json:"relocs_patch"`
	Code     int            `json:"code_bytes"`
	Data     int            `json:"data_bytes"`
	BSS      uint64         `json:"bss_bytes"`
	// NoEscape: no relocation of the patch takes the address of the
	// patch's own code or data other than a direct call or branch (or a
	// veneer's load of its GOT slot), so no pointer into the patch can be
	// stored by the process; the agent may unmap it after a revert.
	NoEscape bool `json:"no_escape"`
	// Escapes say why NoEscape is false: each reference that may hand
	// out a pointer into the patch.
	Escapes []string `json:"escapes,omitempty"`
	// Bindings say how the patch reaches the target's exported symbols
	// of default visibility: through the target's GOT entry (the process
	// may have bound them elsewhere) or directly (the target's own code
	// does).
	Bindings []string `json:"bindings,omitempty"`
	// Guarded says, per replaced function whose guard is the whole
	// function, why: a branch or jump table of its own lands in the bytes
	// a trampoline may overwrite, or one could (an indirect jump).
	Guarded []string `json:"guarded,omitempty"`
	// Checks are the data layout checks that ran.
	Checks []string `json:"checks"`
	// Warnings are things the patch cannot change but that differ.
	Warnings []string `json:"warnings,omitempty"`
}

// FuncReport is one replaced function.
type FuncReport struct {
	Symbol string `json:"symbol"`
	Target uint64 `json:"target"`
	Size   uint64 `json:"size"` // all of it is hashed for the agent's check
	New    uint64 `json:"new"`
	Length int    `json:"length"` // bytes of the replacement
	Keep   uint64 `json:"keep,omitempty"`
	// Guard: the bytes from the entry no thread may be inside when the
	// trampoline is written (the whole function when one of its own
	// branches lands in the overwritten bytes).
	Guard uint64 `json:"guard"`
	// BranchIn is the first offset (from the entry) a branch of the
	// function itself or one of its jump tables targets inside the
	// bytes a trampoline may overwrite; 0 if none.
	BranchIn uint64 `json:"branch_in,omitempty"`
	Thumb    bool   `json:"thumb,omitempty"`
}
