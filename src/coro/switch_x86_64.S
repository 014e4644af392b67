/*
 * Coroutine context switch for x86-64, System V ABI (docs/coroutines.md).
 *
 *   void kite__coro_switch(void **save_sp, void *load_sp);
 *
 * Pushes the callee-saved registers (rbp, rbx, r12-r15) and the MXCSR and x87 control
 * words on the current stack, stores the stack pointer in *save_sp, switches to
 * load_sp, pops the same set from there and returns into the other context. Everything
 * else is caller-saved, so the C compiler has already spilled it around the call.
 * The indirect jump back (rather than ret) needs no endbr64 landing pad because this
 * object carries no IBT/SHSTK property note: the linker then marks the program as not
 * CET-compatible, and neither feature is turned on for it.
 *
 * A new coroutine's stack is prepared in C (coro.c, ctx_init) to look like a suspended
 * switch whose return address is kite__coro_trampoline, with the entry function in r13
 * and its argument in r12.
 */
#if defined(__x86_64__) && !defined(__ILP32__) && defined(__ELF__)

        .text
        .globl  kite__coro_switch
        .hidden kite__coro_switch
        .type   kite__coro_switch, @function
        .p2align 4
kite__coro_switch:
        .cfi_startproc
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbp, 0
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %rbx, 0
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r12, 0
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r13, 0
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r14, 0
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_rel_offset %r15, 0
        subq    $8, %rsp
        .cfi_adjust_cfa_offset 8
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        /* Both stacks hold the same layout here, so the CFI above stays true. */
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        .cfi_adjust_cfa_offset -8
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore %r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore %rbp
        /* Not ret: the return stack buffer predicts the caller of this call, which is
         * never where we go. An indirect jump is predicted from its history instead, and
         * every suspended coroutine continues at the same two places (after the calls
         * in resume and yield), so it is predicted well: ~25% off a round trip. */
        popq    %rcx
        .cfi_adjust_cfa_offset -8
        jmp     *%rcx
        .cfi_endproc
        .size   kite__coro_switch, .-kite__coro_switch

/*
 * First code a coroutine runs, entered by the switch's ret with rsp 16-byte aligned.
 * It calls entry(arg), which never returns (a finished coroutine switches away for
 * good). The undefined return address ends unwinding and backtraces here.
 */
        .globl  kite__coro_trampoline
        .hidden kite__coro_trampoline
        .type   kite__coro_trampoline, @function
        .p2align 4
kite__coro_trampoline:
        .cfi_startproc
        .cfi_undefined %rip
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   kite__coro_trampoline, .-kite__coro_trampoline

#endif

#if defined(__ELF__)
/* The coroutine stacks are data: no executable stack for this object. */
        .section .note.GNU-stack,"",%progbits
#endif
