/* An allocator that comes with dlopen: argv[1] (tcmalloc, mimalloc, ...) is
 * loaded after start, and a thread named "dl-alloc", started before and
 * waiting (no system call) for its functions, calls only its malloc and
 * free as soon as they are there: 300 blocks of 40 bytes, 100 freed. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static void *(*lib_malloc)(size_t);
static void (*lib_free)(void *);
static int ready;

static void *worker(void *arg)
{
	(void)arg;
	static void *blocks[300];
	pthread_setname_np(pthread_self(), "dl-alloc");
	while (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE))
		;
	for (int i = 0; i < 300; ++i)
		blocks[i] = lib_malloc(40);
	for (int i = 0; i < 100; ++i)
		lib_free(blocks[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0)
		return 5;
	void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 3;
	}
	lib_malloc = (void *(*)(size_t))dlsym(lib, "malloc");
	lib_free = (void (*)(void *))dlsym(lib, "free");
	if (!lib_malloc || !lib_free)
		return 4;
	__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	return 0;
}
