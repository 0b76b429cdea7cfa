// SPDX-License-Identifier: GPL-2.0
/*
 * graft_klp_a: a live patch of cmdline_proc_show (fs/proc/cmdline.c), the
 * function behind /proc/cmdline. Patched, /proc/cmdline reads a marker
 * line instead of the boot command line. Test input for agent/klp.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int graft_cmdline_a(struct seq_file *m, void *v)
{
	seq_puts(m, "graft-klp-a: /proc/cmdline is live patched\n");
	return 0;
}

static struct klp_func graft_funcs[] = {
	{ .old_name = "cmdline_proc_show", .new_func = graft_cmdline_a },
	{}
};

static struct klp_object graft_objs[] = {
	{ .name = NULL /* vmlinux */, .funcs = graft_funcs },
	{}
};

static struct klp_patch graft_patch = {
	.mod = THIS_MODULE,
	.objs = graft_objs,
};

static int __init graft_klp_a_init(void)
{
	return klp_enable_patch(&graft_patch);
}

static void __exit graft_klp_a_exit(void)
{
}

module_init(graft_klp_a_init);
module_exit(graft_klp_a_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("graft test live patch: /proc/cmdline marker A");
MODULE_INFO(livepatch, "Y");
