/* glibc's atoi as the original build of the fix: base 10. */
long strtol(const char *s, char **end, int base);

int atoi(const char *s)
{
	return (int)strtol(s, (char **)0, 10);
}
