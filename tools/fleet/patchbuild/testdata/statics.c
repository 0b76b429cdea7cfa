/* statics: a changed static helper with two callers, for statics_test.go.
 * The fix (-DFIX) changes st_helper only; the test compiles it from a
 * copy of this file under another name. */
static int st_calls;

__attribute__((noinline)) static int st_helper(int x)
{
	st_calls++;
#ifdef FIX
	return x * 2 + st_calls % 2;
#else
	return x * 2;
#endif
}

int st_a(int x) { return st_helper(x) + 1; }

int st_b(int x) { return st_helper(x) + 3; }
