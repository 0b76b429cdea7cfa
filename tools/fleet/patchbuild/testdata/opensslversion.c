/* A stand-in for OpenSSL's OpenSSL_version: the original returns one
 * string, the fix (-DFIX) a new string literal. */
const char *OpenSSL_version(int type)
{
	(void)type;
#ifdef FIX
	return "OpenSSL 3.0 (graft live-patched)";
#else
	return "OpenSSL 3.0";
#endif
}
