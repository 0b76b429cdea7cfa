// SPDX-License-Identifier: GPL-2.0
/*
 * graft_klp_b: a cumulative live patch (.replace = true) of
 * cmdline_proc_show with marker B. Enabled, it atomically replaces every
 * earlier patch (graft_klp_a), which the kernel leaves loaded but
 * disabled. Test input for agent/klp.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int graft_cmdline_b(struct seq_file *m, void *v)
{
	seq_puts(m, "graft-klp-b: /proc/cmdline is live patched (cumulative)\n");
	return 0;
}

static struct klp_func graft_funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = graft_cmdline_b },
	{}
};

static struct klp_object graft_objs[] = {
	{ .name = NULL /* vmlinux */, .funcs = graft_funcs },
	{}
};

static struct klp_patch graft_patch = {
	.mod = THIS_MODULE,
	.objs = graft_objs,
	.replace = true,
};

static int __init graft_klp_b_init(void)
{
	return klp_enable_patch(&graft_patch);
}

static void __exit graft_klp_b_exit(void)
{
}

module_init(graft_klp_b_init);
module_exit(graft_klp_b_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("graft test live patch: /proc/cmdline marker B, replaces earlier patches");
MODULE_INFO(livepatch, "Y");
