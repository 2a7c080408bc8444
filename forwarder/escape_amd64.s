//go:build !purego

#include "textflag.h"

// The XOR that turns \b, \t, \n, \f and \r into their escape's letter, at
// their value; zero for the other 11 below 0x10.
DATA escLetters<>+0(SB)/8, $0
DATA escLetters<>+8(SB)/8, $0x00007f6a00647d6a
GLOBL escLetters<>(SB), RODATA|NOPTR, $16

// Four bytes each of: < and > differ in this bit only; "; \, also what
// VPSHUFB takes backslashes from; 0x20, signed above control bytes and 0x80
// and more; then & and > without html, 0: & is escaped as six bytes anyway
// and x|2 is never 0; then & and > with html.
DATA escConsts<>+0(SB)/4, $0x02020202
DATA escConsts<>+4(SB)/4, $0x22222222
DATA escConsts<>+8(SB)/4, $0x5c5c5c5c
DATA escConsts<>+12(SB)/4, $0x20202020
DATA escConsts<>+16(SB)/4, $0
DATA escConsts<>+20(SB)/4, $0
DATA escConsts<>+24(SB)/4, $0x26262626
DATA escConsts<>+28(SB)/4, $0x3e3e3e3e
GLOBL escConsts<>(SB), RODATA|NOPTR, $32

// Added with unsigned saturation, bytes below 0x10 index escLetters and the
// rest have the top bit set, which VPSHUFB makes zero.
DATA escIndex<>+0(SB)/8, $0x7070707070707070
DATA escIndex<>+8(SB)/8, $0x7070707070707070
DATA escIndex<>+16(SB)/8, $0x7070707070707070
DATA escIndex<>+24(SB)/8, $0x7070707070707070
GLOBL escIndex<>(SB), RODATA|NOPTR, $32

// func escapeAVX2(dst []byte, j int, src string, i int, html, wide bool) (ni, nj int)
//
// Each step loads 32 bytes of src and finds those to escape: ", \, below
// 0x20, 0x80 and more, and <, >, & with html. None: they are stored as they
// are. Only two-byte escapes: each 8 bytes are spread over 16 by VPSHUFB
// (·avx2Expand, by which of them to escape) from the bytes, their letters and
// backslashes, and stored one after the other; with wide (AVX-512 VBMI2 and
// BMI2), the 32 are spread over up to 64 by one VPEXPANDB over backslashes,
// at the places PEXT finds (see below). Else each byte to escape in
// turn is stored from ·avx2Escape as 8 bytes, then the 32 bytes of src after
// it, so the bytes up to the next one are in place; at one of 0x80 or more,
// or without room for the escape and the 32 bytes, it returns there. In that
// loop DI is where the step's byte 0 would go were nothing more escaped, so
// the byte at t is written at t(DI) and an escape adds its length less one.
// Loads reach 64 bytes past SI, stores 64 past DI: a step starts while 64
// bytes of src and of room are left.
TEXT ·escapeAVX2(SB), NOSPLIT, $0-80
	MOVBLZX wide+57(FP), R13
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), R9
	ADDQ DI, R9                // end of dst
	ADDQ j+24(FP), DI
	MOVQ src_base+32(FP), SI
	MOVQ src_len+40(FP), R11
	LEAQ -64(SI)(R11*1), R11   // the last step's start (signed: below SI when src is short)
	ADDQ i+48(FP), SI
	LEAQ ·avx2Escape(SB), R10
	LEAQ ·avx2Expand(SB), R12

	// Constants from memory: a legacy SSE MOVQ to an X register after a VEX
	// instruction cost ~200ns a switch of state here, and the setup is a
	// share of short strings' time.
	LEAQ  escConsts<>(SB), AX
	MOVBLZX html+56(FP), CX
	VPBROADCASTD 0(AX), Y9
	VPBROADCASTD 4(AX), Y10
	VPBROADCASTD 8(AX), Y11
	VPBROADCASTD 12(AX), Y12
	VPBROADCASTD 16(AX)(CX*8), Y13
	VPBROADCASTD 20(AX)(CX*8), Y14
	VBROADCASTI128 escLetters<>(SB), Y7
	VPXOR Y8, Y8, Y8
	TESTQ R13, R13
	JZ    step
	VPBROADCASTD 8(AX), Z11     // backslashes in all 64 bytes for VPEXPANDB; Y11 as it was

step:
	CMPQ SI, R11
	JGT  done
	LEAQ 64(DI), AX
	CMPQ AX, R9
	JHI  done
	VMOVDQU (SI), Y0
	VPCMPEQB Y0, Y10, Y1
	VPCMPEQB Y0, Y11, Y2
	VPCMPGTB Y0, Y12, Y3
	VPCMPEQB Y0, Y13, Y4
	VPOR     Y0, Y9, Y5
	VPCMPEQB Y5, Y14, Y5
	VPOR     Y1, Y2, Y1
	VPOR     Y4, Y5, Y4        // <>& with html, NULs without: six bytes either way
	VPOR     Y1, Y3, Y1
	VPOR     Y1, Y4, Y1
	VPMOVMSKB Y1, DX
	TESTL    DX, DX
	JNZ      escapes
	VMOVDQU  Y0, (DI)
	ADDQ     $32, SI
	ADDQ     $32, DI
	JMP      step

escapes:
	// Bytes below 0x20 without a letter, 0x80 and more, or <>& with html.
	VPADDUSB escIndex<>(SB), Y0, Y6
	VPSHUFB  Y6, Y7, Y6
	VPCMPEQB Y6, Y8, Y2
	VPAND    Y2, Y3, Y2
	VPOR     Y2, Y4, Y2
	VPMOVMSKB Y2, AX
	TESTL    AX, AX
	JNZ      oneByOne

	VPXOR       Y6, Y0, Y0
	TESTQ       R13, R13
	JNZ         expand
	// Each group of 8 bytes on its own in half a lane, backslashes in the other half.
	VPUNPCKLQDQ Y11, Y0, Y1    // bytes 0-7 and 16-23
	VPUNPCKHQDQ Y11, Y0, Y2    // bytes 8-15 and 24-31
	// Each group's 8 bits of DX times 16: its ·avx2Expand entry.
	MOVL DX, AX
	SHLL $4, AX
	ANDL $0xff0, AX
	MOVL DX, BX
	SHRL $4, BX
	ANDL $0xff0, BX
	MOVL DX, CX
	SHRL $12, CX
	ANDL $0xff0, CX
	MOVL DX, R8
	SHRL $20, R8
	ANDL $0xff0, R8
	VMOVDQU     (R12)(AX*1), X5
	VINSERTI128 $1, (R12)(CX*1), Y5, Y5
	VPSHUFB     Y5, Y1, Y1
	VMOVDQU     (R12)(BX*1), X6
	VINSERTI128 $1, (R12)(R8*1), Y6, Y6
	VPSHUFB     Y6, Y2, Y2
	// Each group takes 8 bytes and one more for each escape.
	POPCNTL AX, AX
	POPCNTL BX, BX
	POPCNTL CX, CX
	POPCNTL R8, R8
	VMOVDQU X1, (DI)
	LEAQ    8(DI)(AX*1), DI
	VMOVDQU X2, (DI)
	LEAQ    8(DI)(BX*1), DI
	VEXTRACTI128 $1, Y1, (DI)
	LEAQ    8(DI)(CX*1), DI
	VEXTRACTI128 $1, Y2, (DI)
	LEAQ    8(DI)(R8*1), DI
	ADDQ    $32, SI
	JMP     step

expand:
	// Two output bits for each byte, from the lowest: a backslash's place
	// (kept only before a byte to escape) and the byte's. PEXT of 0b10 pairs
	// at the places kept is where VPEXPANDB puts the 32 bytes in order; the
	// places left are the backslashes already there.
	MOVQ  $0x5555555555555555, AX
	PDEPQ AX, DX, BX
	MOVQ  $0xaaaaaaaaaaaaaaaa, CX
	ORQ   CX, BX
	PEXTQ BX, CX, AX
	KMOVQ AX, K1
	VMOVDQU64 Z11, Z5
	VPEXPANDB Z0, K1, Z5
	VMOVDQU64 Z5, (DI)
	POPCNTL DX, AX
	LEAQ    32(DI)(AX*1), DI
	ADDQ    $32, SI
	JMP     step

oneByOne:
	VMOVDQU Y0, (DI)

escape:
	TZCNTL DX, CX
	BLSRL  DX, DX
	// Room for the escape as 8 bytes and 32 after its six.
	LEAQ   38(DI)(CX*1), AX
	CMPQ   AX, R9
	JHI    stop
	MOVBLZX (SI)(CX*1), AX
	MOVQ   (R10)(AX*8), BX
	TESTQ  BX, BX
	JZ     stop
	MOVQ   BX, (DI)(CX*1)
	SHRQ   $56, BX
	ADDQ   BX, DI
	VMOVDQU 1(SI)(CX*1), Y0
	VMOVDQU Y0, 1(DI)(CX*1)
	TESTL  DX, DX
	JNZ    escape
	ADDQ   $32, SI
	ADDQ   $32, DI
	JMP    step

stop:
	// The byte at CX is not written; those before it are.
	ADDQ CX, SI
	ADDQ CX, DI

done:
	SUBQ src_base+32(FP), SI
	MOVQ SI, ni+64(FP)
	SUBQ dst_base+0(FP), DI
	MOVQ DI, nj+72(FP)
	VZEROUPPER
	RET
