/* libpre: preloaded (LD_PRELOAD), it interposes libbind's bd_pre. */
int bd_pre(void) { return 9; }
