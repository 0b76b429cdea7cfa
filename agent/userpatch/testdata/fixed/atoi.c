/* The fix: atoi accepts C prefixes (base 0), through the library's own
 * strtol. */
long strtol(const char *s, char **end, int base);

int atoi(const char *s)
{
	return (int)strtol(s, (char **)0, 0);
}
