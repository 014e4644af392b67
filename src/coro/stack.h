/*
 * coro/stack — coroutine stack memory and stack-overflow reporting. Private to coro/.
 */
#ifndef KITE_CORO_STACK_H
#define KITE_CORO_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The system page size, cached. */
size_t kite__page_size(void);
/* Bytes of PROT_NONE guard below every stack: 16 KiB or one page, whichever is more. */
size_t kite__stack_guard_size(void);

/*
 * Map a stack of `size` usable bytes (a multiple of the page size) above its guard.
 * Sets *lo to the lowest usable byte. KITE_OK or KITE_ERR_NOMEM (errno kept).
 */
int kite__stack_map(size_t size, uint8_t **lo);
/* Unmap a stack made by kite__stack_map(), guard included. */
void kite__stack_unmap(uint8_t *lo, size_t size);
/* Give back to the kernel every page of the stack below its top `keep` bytes. */
void kite__stack_trim(uint8_t *lo, size_t size, size_t keep);

/* Install the process-wide SIGSEGV handler (once). KITE_OK or -errno. */
int kite__stack_fault_handler_init(void);
/* Make sure this thread has an alternate signal stack (counted per thread).
 * KITE_OK or KITE_ERR_NOMEM. */
int kite__altstack_acquire(void);
/* Drop one count; the last one removes the alternate stack if we installed it. */
void kite__altstack_release(void);

/*
 * Asked by the signal handler, on the faulting thread: the usable stack of the
 * coroutine running here, if any. Async-signal-safe.
 */
bool kite__coro_current_stack(uintptr_t *lo, size_t *size);

#endif
