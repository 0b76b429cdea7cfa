/* libbind: symbols the process binds elsewhere than the library.
 * bd_counter is copied into the program (R_X86_64_COPY on amd64: the
 * library reaches it through its GOT), bd_name is interposed by the
 * program and bd_pre by an LD_PRELOAD library (both called through the
 * library's PLT). FIX_BIND is the fix, for bind.ulp: it also calls
 * bd_late, through a PLT entry never used before. */
int bd_counter;

int bd_name(void) { return 1; }

int bd_pre(void) { return 2; }

int bd_late(void) { return 5; }

/* Never called: its call gives libbind a PLT entry for bd_late that is
 * still unbound (lazy binding, -z lazy) when the fix first calls it; on
 * arm64 the resolver then needs x16 to hold the GOT entry's address. */
int bd_unused(void) { return bd_late(); }

int bd_tick(void)
{
#ifdef FIX_BIND
	bd_counter += 2;
	return 10000 + bd_name() * 100 + bd_pre() + bd_late();
#else
	bd_counter += 1;
	return bd_name() * 100 + bd_pre();
#endif
}
