/* libgt, fixed: gt_value returns x*gt_scale + 2 and counts its calls the
 * same way (through the library's own gt_bump and calls). */
int gt_scale = 3;
static int calls;

__attribute__((noinline)) static int gt_bump(void) { return ++calls; }

int gt_calls(void) { return calls; }

int gt_value(int x)
{
	gt_bump();
	return x * gt_scale + 2;
}
