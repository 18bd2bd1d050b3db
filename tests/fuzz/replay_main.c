/*
 * Runs a libFuzzer harness over files and directories without libFuzzer,
 * so every build (gcc, ASan) compiles the harnesses and replays their
 * corpus: a harness that stops compiling, or an input that used to pass
 * and now aborts, fails the ordinary test suite instead of only the
 * clang fuzz job.
 *
 * Usage: replay_NAME PATH...   (each PATH a file or a directory of files)
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path, unsigned long *count)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		perror(path);
		return -1;
	}
	size_t cap = 4096, len = 0;
	uint8_t *data = malloc(cap); /* owner: this function */
	if (!data) {
		fclose(f);
		return -1;
	}
	size_t n;
	while ((n = fread(data + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			uint8_t *grown = realloc(data, cap * 2);
			if (!grown) {
				free(data);
				fclose(f);
				return -1;
			}
			data = grown;
			cap *= 2;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		free(data);
		fprintf(stderr, "%s: read error\n", path);
		return -1;
	}
	/* A copy of exactly len bytes, so ASan sees a read past the input. */
	uint8_t *exact = malloc(len ? len : 1); /* owner: this function */
	if (!exact) {
		free(data);
		return -1;
	}
	memcpy(exact, data, len);
	free(data);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	++*count;
	return 0;
}

static int replay_path(const char *path, unsigned long *count)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path, count);
	DIR *d = opendir(path);
	if (!d) {
		perror(path);
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char child[4096];
		if (snprintf(child, sizeof child, "%s/%s", path, e->d_name) >= (int)sizeof child) {
			fprintf(stderr, "%s/%s: path too long\n", path, e->d_name);
			rc = -1;
			break;
		}
		rc = replay_path(child, count);
	}
	closedir(d);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	for (int i = 1; i < argc; i++)
		if (replay_path(argv[i], &count) != 0)
			return 1;
	if (count == 0) {
		fprintf(stderr, "no inputs replayed\n");
		return 1;
	}
	printf("replayed %lu inputs\n", count);
	return 0;
}
