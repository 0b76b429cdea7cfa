/* OpenSSL_version as the original build of the fix (what matters to the
 * builder is that the fixed one differs). */
const char *OpenSSL_version(int t)
{
	return t == 0 ? "OpenSSL" : "";
}
