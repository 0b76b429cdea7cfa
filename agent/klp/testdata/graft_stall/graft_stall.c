// SPDX-License-Identifier: GPL-2.0
/*
 * graft_stall: a plain module (no livepatch=Y) whose kernel thread sleeps
 * inside graft_stall_sleep() for as long as the module is loaded. A live
 * patch of graft_stall_sleep can therefore never switch that thread, and
 * its transition never completes. Test input for agent/klp.
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/err.h>
#include <linux/kthread.h>
#include <linux/module.h>

static struct task_struct *graft_worker;
static DECLARE_COMPLETION(graft_inside);

/* Returns only when the module is being unloaded. */
noinline int graft_stall_sleep(void)
{
	complete(&graft_inside);
	while (!kthread_should_stop())
		msleep_interruptible(200);
	return 0;
}

static int graft_stall_thread(void *unused)
{
	int ret = graft_stall_sleep();

	/* Keep this frame, so the call above is not a tail call. */
	barrier();
	return ret;
}

static int __init graft_stall_init(void)
{
	graft_worker = kthread_run(graft_stall_thread, NULL, "graft_stall");
	if (IS_ERR(graft_worker))
		return PTR_ERR(graft_worker);
	/* Loaded means parked inside graft_stall_sleep: a live patch loaded
	 * after this can never switch the thread, however slow the machine. */
	wait_for_completion(&graft_inside);
	return 0;
}

static void __exit graft_stall_exit(void)
{
	kthread_stop(graft_worker);
}

module_init(graft_stall_init);
module_exit(graft_stall_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("graft test module: a kernel thread parked in graft_stall_sleep");
