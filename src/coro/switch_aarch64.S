/*
 * Coroutine context switch for AArch64, AAPCS64 (docs/coroutines.md).
 *
 *   void kite__coro_switch(void **save_sp, void *load_sp);
 *
 * Saves the callee-saved registers x19-x28, the frame pointer x29, the link register
 * x30 and the low halves d8-d15 of v8-v15 in a 160-byte frame on the current stack,
 * stores sp in *save_sp, switches to load_sp, restores the same frame from there and
 * returns through the restored x30 into the other context.
 *
 * A new coroutine's frame is prepared in C (coro.c, ctx_init): x30 points at
 * kite__coro_trampoline, x20 holds the entry function and x19 its argument.
 */
#if defined(__aarch64__) && !defined(__ILP32__) && defined(__ELF__)

        .text
        .globl  kite__coro_switch
        .hidden kite__coro_switch
        .type   kite__coro_switch, %function
        .p2align 4
kite__coro_switch:
        .cfi_startproc
        hint    #34                     /* bti c: a landing pad where BTI is on, else a nop */
        sub     sp, sp, #160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        ret
        .cfi_endproc
        .size   kite__coro_switch, .-kite__coro_switch

/*
 * First code a coroutine runs, entered by the switch's ret with sp 16-byte aligned.
 * It calls entry(arg), which never returns. The undefined return address ends
 * unwinding and backtraces here.
 */
        .globl  kite__coro_trampoline
        .hidden kite__coro_trampoline
        .type   kite__coro_trampoline, %function
        .p2align 4
kite__coro_trampoline:
        .cfi_startproc
        .cfi_undefined x30
        mov     x0, x19
        blr     x20
        brk     #1
        .cfi_endproc
        .size   kite__coro_trampoline, .-kite__coro_trampoline

#endif

#if defined(__ELF__)
/* The coroutine stacks are data: no executable stack for this object. */
        .section .note.GNU-stack,"",%progbits
#endif
