/* Compiled by link_test.go for every arch; linked by Link and by the real
 * linker at the same addresses. Undefined symbols are the target's: t_ are
 * Thumb functions, a_ ARM functions (on arm; plain functions elsewhere),
 * d_ data. Strings are distinct and none is a suffix of another so that
 * the linker's string merging changes nothing. */
#pragma GCC visibility push(hidden)
extern int d_counter;
extern int d_table[16];
extern long d_wide[4];
extern short d_half[4];
extern unsigned char d_bytes[8];
extern int t_helper(int);
extern int a_helper(int);
extern void t_log(const char *, ...);
#pragma GCC visibility pop

#ifdef __thumb__
#define SAME_STATE t_helper
#else
#define SAME_STATE a_helper
#endif

static int local_state;
int patch_data = 42;
static const char *const names[] = {"alpha-one", "beta-two", "gamma-three"};
int (*const ops[])(int) = {t_helper, a_helper};
int (*hooks[])(int) = {t_helper, a_helper, 0};
int *data_ptrs[] = {&d_counter, &d_table[5], &patch_data, &local_state};

__attribute__((noinline)) static int local_fn(int x)
{
	return x * 3 + local_state++;
}

__attribute__((noinline)) int f_calls(int x)
{
	int r = t_helper(x);
	r += a_helper(r);
	r += local_fn(r);
	return r + d_counter;
}

int f_tail(int x)
{
	return SAME_STATE(x + 1);
}

const char *f_name(int i)
{
	t_log("name %d of %s\n", i, "the-list");
	return names[i & 1];
}

int f_table(int i)
{
	return d_table[i] + hooks[i](i) + ops[i & 1](i);
}

long f_addr(void)
{
	return (long)&d_counter + (long)&d_table[3] + d_wide[2] + d_half[1] + d_bytes[3];
}

int *f_ptr(int i)
{
	return data_ptrs[i] + f_calls(i);
}
