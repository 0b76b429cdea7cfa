// SPDX-License-Identifier: GPL-2.0
/*
 * graft_klp_stall: a live patch of graft_stall_sleep() in the module
 * graft_stall. That module's thread never leaves the function, so the
 * transition to this patch cannot complete: the agent must reverse it at
 * its deadline. Test input for agent/klp.
 */
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

static int graft_stall_sleep_patched(void)
{
	return 0;
}

static struct klp_func graft_funcs[] = {
	{ .old_name = "graft_stall_sleep", .new_func = graft_stall_sleep_patched },
	{}
};

static struct klp_object graft_objs[] = {
	{ .name = "graft_stall", .funcs = graft_funcs },
	{}
};

static struct klp_patch graft_patch = {
	.mod = THIS_MODULE,
	.objs = graft_objs,
};

static int __init graft_klp_stall_init(void)
{
	return klp_enable_patch(&graft_patch);
}

static void __exit graft_klp_stall_exit(void)
{
}

module_init(graft_klp_stall_init);
module_exit(graft_klp_stall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("graft test live patch that cannot complete its transition");
MODULE_INFO(livepatch, "Y");
