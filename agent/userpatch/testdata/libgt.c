/* libgt: the test library the live-patch tests patch. gt_value is the
 * function the fix changes; it reads a global (gt_scale) and calls a
 * static helper, so its replacement needs relocations into the library. */
int gt_scale = 3;
static int calls;

__attribute__((noinline)) static int gt_bump(void) { return ++calls; }

int gt_calls(void) { return calls; }

int gt_value(int x)
{
	gt_bump();
	return x * gt_scale + 1;
}
