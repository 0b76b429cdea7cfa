/* libfar: a fix calling a static function of the target, which the patch
 * must reach however far from the target the agent maps it. The tests
 * build it as the target and the original object (no defines) and as the
 * fixed object (-DFIX). */
static int far_counter;

/* noipa: gcc must neither clone nor inline it, in either build. */
static __attribute__((noipa)) int far_bump(int x)
{
	far_counter += x;
	return far_counter * 3;
}

#ifdef FIX
/* New in the fix: carried in the patch; tail-calls far_bump (a jump). */
static __attribute__((noipa)) int far_twice(int x) { return far_bump(x ^ 5); }
#endif

int far_value(int x)
{
#ifdef FIX
	return far_bump(x + 1) + far_twice(x); /* calls: one to the target, one inside the patch */
#else
	return far_bump(x);
#endif
}
