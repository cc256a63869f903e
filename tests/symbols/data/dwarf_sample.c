/* Types for the DWARF reader's tests: compiled with gcc -g at several DWARF versions, run to
 * print the compiler's own offsets, sizes and bitfield positions (the oracle), then read back
 * from its DWARF by kvmfx. */
#ifndef TYPES_ONLY /* TYPES_ONLY: just the types and variables (a small fuzz seed) */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#endif

struct list_head { struct list_head *next, *prev; };
typedef unsigned long ulong_t;
typedef const volatile ulong_t cv_ulong;
enum colour { RED = -1, GREEN = 7, BLUE = 0x7fffffff };

struct inner { char tag; int value; short pair[2]; };

struct sample {
	char c;
	int i;
	long l;
	struct list_head node;
	unsigned int flag_a : 1;
	unsigned int flag_b : 3;
	unsigned int wide : 20;
	signed int neg : 5;
	unsigned long long big : 40;
	ulong_t counter;
	cv_ulong qualified;
	char name[16];
	int grid[3][4];
	struct inner inners[2];
	union { int as_int; float as_float; unsigned char raw[8]; } u;
	struct { int anon_x; int anon_y; };
	union { long anon_l; void *anon_p; };
	enum colour colour;
	struct sample *self;
	int (*callback)(int, char *);
	char tail[];
};

struct sample s_var;
struct inner inner_var;
enum colour colour_var;

#ifndef TYPES_ONLY
static int bitpos(struct sample *s, size_t size)
{
	unsigned char *p = (unsigned char *)s;
	for (size_t i = 0; i < size * 8; i++)
		if (p[i / 8] & (1u << (i % 8)))
			return (int)i;
	return -1;
}

#define BIT(field, width) do { memset(&s_var, 0, sizeof(s_var)); s_var.field = -1; \
	printf("\"bit:%s\": [%d, %d],\n", #field, bitpos(&s_var, sizeof(s_var)), width); } while (0)
#define OFF(type, field) printf("\"off:%s.%s\": %zu,\n", #type, #field, offsetof(struct type, field))

int main(void)
{
	printf("{\n");
	OFF(sample, c); OFF(sample, i); OFF(sample, l); OFF(sample, node); OFF(sample, counter);
	OFF(sample, qualified); OFF(sample, name); OFF(sample, grid); OFF(sample, inners);
	OFF(sample, u); OFF(sample, anon_x); OFF(sample, anon_y); OFF(sample, anon_l);
	OFF(sample, anon_p); OFF(sample, colour); OFF(sample, self); OFF(sample, callback);
	OFF(sample, tail); OFF(inner, tag); OFF(inner, value); OFF(inner, pair);
	BIT(flag_a, 1); BIT(flag_b, 3); BIT(wide, 20); BIT(neg, 5); BIT(big, 40);
	printf("\"size:sample\": %zu, \"size:inner\": %zu, \"size:list_head\": %zu,\n",
	       sizeof(struct sample), sizeof(struct inner), sizeof(struct list_head));
	printf("\"size:grid\": %zu, \"size:u\": %zu\n}\n", sizeof(s_var.grid), sizeof(s_var.u));
	return 0;
}
#endif
