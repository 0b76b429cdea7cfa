/* The fix: OpenSSL_version(0) names the live patch; other types answer
 * from a new table in the patch. */
static const char *const names[] = {"graft-patched OpenSSL", "graft cflags", "graft built on", "graft platform", "graft dir"};

const char *OpenSSL_version(int t)
{
	if (t >= 0 && t < 5)
		return names[t];
	return "graft: not available";
}
