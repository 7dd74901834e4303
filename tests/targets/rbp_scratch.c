/* An allocation made by a function without a frame pointer that keeps its
 * own value in rbp (saved on entry, restored by its epilogue), called from
 * code with frame pointers: the stack must go on past it to main. The
 * function is assembly, so that rbp really is scratch at the call. */
#include <stdio.h>
#include <stdlib.h>

void *rbp_scratch_alloc(size_t n);
__asm__(".text\n"
	".globl rbp_scratch_alloc\n"
	".type rbp_scratch_alloc, @function\n"
	"rbp_scratch_alloc:\n"
	"	push %rbp\n"
	"	push %rbx\n"
	"	mov $0x1234, %ebp\n" /* rbp as a plain register */
	"	mov %rdi, %rbx\n"
	"	sub $8, %rsp\n"
	"	mov %rbx, %rdi\n"
	"	call malloc@PLT\n"
	"	add $8, %rsp\n"
	"	pop %rbx\n"
	"	pop %rbp\n"
	"	ret\n"
	".size rbp_scratch_alloc, .-rbp_scratch_alloc\n");

__attribute__((noinline)) void *keep_one(size_t n)
{
	void *p = rbp_scratch_alloc(n);
	__asm__ volatile("" ::: "memory"); /* not a tail call */
	return p;
}

int main(void)
{
	void *volatile kept[7];
	for (int i = 0; i < 7; ++i)
		kept[i] = keep_one(48);
	puts("ok");
	return 0;
}
