//go:build !purego

#include "textflag.h"

// Rows of quickTables (quickscan.go), 32 bytes each.
#define COLON (0*32)
#define QUOTE (1*32)
#define CASE (2*32)
#define LOWE (3*32)
#define LOWB (4*32)
#define BACKSLASH (5*32)
#define BIGJ (6*32)
#define LOWY (7*32)
#define LEADI (8*32)
#define NEXTI (9*32)
#define LEADK (10*32)
#define NEXTK (11*32)
#define ZERO (12*32)
#define NINE (13*32)
#define DASH (14*32)
#define NIBBLE (15*32)
#define LASTLO (16*32)
#define LASTHI (17*32)
#define PREVLO (18*32)
#define PREVHI (19*32)

// RUNS13 ors into AX a bit for each run of 13 set bits in x (clobbering it,
// R12 and R13), at the run's lowest bit.
#define RUNS13(x) \
	MOVQ x, R12 \
	SHRQ $1, R12 \
	ANDQ x, R12 \
	MOVQ R12, R13 \
	SHRQ $2, R13 \
	ANDQ R13, R12 \
	MOVQ R12, R13 \
	SHRQ $4, R13 \
	ANDQ R12, R13 \
	SHRQ $8, R12 \
	ANDQ R12, R13 \
	SHRQ $12, x \
	ANDQ x, R13 \
	ORQ  R13, AX

// func quickScanAVX2(body []byte, i int, t *quickTables, carry uint32) (at int, colons, bes uint32, hit bool, cards uint32)
//
// Each step loads the block v = body[i:i+32] and the same block one, two and
// three bytes earlier (p1, p2, p3), so each byte is compared with the bytes
// before it in one go.
TEXT ·quickScanAVX2(SB), NOSPLIT, $0-72
	MOVQ body_base+0(FP), SI
	MOVQ body_len+8(FP), DX
	MOVQ i+24(FP), BX
	MOVQ t+32(FP), DI
	MOVL carry+40(FP), R8
	VMOVDQU LASTLO(DI), Y11
	VMOVDQU LASTHI(DI), Y12
	VMOVDQU PREVLO(DI), Y13
	VMOVDQU PREVHI(DI), Y14
	VMOVDQU CASE(DI), Y9
	VMOVDQU NIBBLE(DI), Y10
	VPXOR   Y15, Y15, Y15
	SUBQ $32, DX // the last block starts here

loop:
	CMPQ BX, DX
	JGT  done
	VMOVDQU (SI)(BX*1), Y0
	VMOVDQU -1(SI)(BX*1), Y1
	VMOVDQU -2(SI)(BX*1), Y2
	VMOVDQU -3(SI)(BX*1), Y3

	// Y4: hits. A backslash; J after "ey"; 0xB0 after 0xC4; 0x84 after 0xE2.
	VPCMPEQB BACKSLASH(DI), Y0, Y4
	VPCMPEQB BIGJ(DI), Y0, Y5
	VPCMPEQB LOWY(DI), Y1, Y6
	VPAND    Y6, Y5, Y5
	VPCMPEQB LOWE(DI), Y2, Y6
	VPAND    Y6, Y5, Y5
	VPOR     Y5, Y4, Y4
	VPCMPEQB LEADI(DI), Y1, Y5
	VPCMPEQB NEXTI(DI), Y0, Y6
	VPAND    Y6, Y5, Y5
	VPOR     Y5, Y4, Y4
	VPCMPEQB LEADK(DI), Y1, Y5
	VPCMPEQB NEXTK(DI), Y0, Y6
	VPAND    Y6, Y5, Y5
	VPOR     Y5, Y4, Y4

	// Y5: an e after a b, either case (or-ing 0x20 lower-cases only letters into them).
	VPOR     Y9, Y0, Y5
	VPCMPEQB LOWE(DI), Y5, Y5
	VPOR     Y9, Y1, Y6
	VPCMPEQB LOWB(DI), Y6, Y6
	VPAND    Y6, Y5, Y5

	// Y6: colons after a quote whose two bytes before may end a sensitive
	// name (each byte looked up in its nibble tables), or after whitespace.
	VPSRLW   $4, Y2, Y6
	VPAND    Y10, Y6, Y6
	VPSHUFB  Y6, Y12, Y6
	VPAND    Y10, Y2, Y7
	VPSHUFB  Y7, Y11, Y7
	VPAND    Y7, Y6, Y6
	VPCMPEQB Y15, Y6, Y6 // p2 ends no name
	VPSRLW   $4, Y3, Y7
	VPAND    Y10, Y7, Y7
	VPSHUFB  Y7, Y14, Y7
	VPAND    Y10, Y3, Y8
	VPSHUFB  Y8, Y13, Y8
	VPAND    Y8, Y7, Y7
	VPCMPEQB Y15, Y7, Y7 // p3 comes before no name's last byte
	VPOR     Y7, Y6, Y6
	VPCMPEQB QUOTE(DI), Y1, Y7
	VPANDN   Y7, Y6, Y6 // a quote, not ruled out
	VPMINUB  Y9, Y1, Y7
	VPCMPEQB Y7, Y1, Y7 // p1 <= 0x20: whitespace (or a control byte)
	VPOR     Y7, Y6, Y6
	VPCMPEQB COLON(DI), Y0, Y7
	VPAND    Y7, Y6, Y6

	// Y7: card bytes (digits, space, dash).
	VPSUBB   ZERO(DI), Y0, Y7
	VPMINUB  NINE(DI), Y7, Y8
	VPCMPEQB Y8, Y7, Y7
	VPCMPEQB Y9, Y0, Y8
	VPOR     Y8, Y7, Y7
	VPCMPEQB DASH(DI), Y0, Y8
	VPOR     Y8, Y7, Y7

	// 13 card bytes in a row in this block and the one before (R10).
	VPMOVMSKB Y7, R9
	MOVQ      R9, R10
	SHLQ      $32, R10
	ORQ       R8, R10
	MOVL      R9, R8

	VPMOVMSKB Y4, AX
	RUNS13(R10)
	JNZ       hit
	VPMOVMSKB Y6, R9
	VPMOVMSKB Y5, R10
	MOVL      R9, R11
	ORL       R10, R11
	JNZ       found
	ADDQ      $32, BX
	JMP       loop

found:
	XORL AX, AX
	JMP  out

hit:
	XORL R9, R9
	XORL R10, R10
	MOVL $1, AX
	JMP  out

done:
	XORL R9, R9
	XORL R10, R10
	XORL AX, AX

out:
	MOVQ BX, at+48(FP)
	MOVL R9, colons+56(FP)
	MOVL R10, bes+60(FP)
	MOVB AX, hit+64(FP)
	MOVL R8, cards+68(FP)
	VZEROUPPER
	RET

// func quickScanAVX512(body []byte, i int, t *quickTables, carry uint64) (at int, colons, bes uint64, hit bool, cards uint64)
//
// quickScanAVX2's checks 64 bytes a step, each into an opmask: the equality
// tests of a byte and the bytes before it are merged by masked compares, a
// byte in a nibble-table set by VPTESTMB. The card runs are looked for in the
// block (64 bits) and across its start (the 32 bits of each side of it: a run
// of 13 that crosses it lies within 12 on each side).
TEXT ·quickScanAVX512(SB), NOSPLIT, $0-88
	MOVQ body_base+0(FP), SI
	MOVQ body_len+8(FP), DX
	MOVQ i+24(FP), BX
	MOVQ t+32(FP), DI
	MOVQ carry+40(FP), R8
	VBROADCASTI32X4 LASTLO(DI), Z11
	VBROADCASTI32X4 LASTHI(DI), Z12
	VBROADCASTI32X4 PREVLO(DI), Z13
	VBROADCASTI32X4 PREVHI(DI), Z14
	VPBROADCASTB BACKSLASH(DI), Z16
	VPBROADCASTB BIGJ(DI), Z17
	VPBROADCASTB LOWY(DI), Z18
	VPBROADCASTB LOWE(DI), Z19
	VPBROADCASTB LEADI(DI), Z20
	VPBROADCASTB NEXTI(DI), Z21
	VPBROADCASTB LEADK(DI), Z22
	VPBROADCASTB NEXTK(DI), Z23
	VPBROADCASTB CASE(DI), Z24
	VPBROADCASTB LOWB(DI), Z25
	VPBROADCASTB COLON(DI), Z26
	VPBROADCASTB QUOTE(DI), Z27
	VPBROADCASTB ZERO(DI), Z28
	VPBROADCASTB NINE(DI), Z29
	VPBROADCASTB DASH(DI), Z30
	VPBROADCASTB NIBBLE(DI), Z31
	SUBQ $64, DX // the last block starts here

loop512:
	CMPQ BX, DX
	JGT  done512
	VMOVDQU8 (SI)(BX*1), Z0
	VMOVDQU8 -1(SI)(BX*1), Z1
	VMOVDQU8 -2(SI)(BX*1), Z2
	VMOVDQU8 -3(SI)(BX*1), Z3

	// K1: hits. A backslash; J after "ey"; 0xB0 after 0xC4; 0x84 after 0xE2.
	VPCMPEQB Z16, Z0, K1
	VPCMPEQB Z17, Z0, K2
	VPCMPEQB Z18, Z1, K2, K2
	VPCMPEQB Z19, Z2, K2, K2
	KORQ     K2, K1, K1
	VPCMPEQB Z20, Z1, K2
	VPCMPEQB Z21, Z0, K2, K2
	KORQ     K2, K1, K1
	VPCMPEQB Z22, Z1, K2
	VPCMPEQB Z23, Z0, K2, K2
	KORQ     K2, K1, K1

	// K2: an e after a b, either case.
	VPORQ    Z24, Z0, Z4
	VPCMPEQB Z19, Z4, K2
	VPORQ    Z24, Z1, Z5
	VPCMPEQB Z25, Z5, K2, K2

	// K3: colons after a quote whose two bytes before may end a sensitive
	// name, or after whitespace.
	VPSRLW   $4, Z2, Z4
	VPANDQ   Z31, Z4, Z4
	VPSHUFB  Z4, Z12, Z4
	VPANDQ   Z31, Z2, Z5
	VPSHUFB  Z5, Z11, Z5
	VPTESTMB Z4, Z5, K3 // p2 may end a name
	VPSRLW   $4, Z3, Z6
	VPANDQ   Z31, Z6, Z6
	VPSHUFB  Z6, Z14, Z6
	VPANDQ   Z31, Z3, Z7
	VPSHUFB  Z7, Z13, Z7
	VPTESTMB Z6, Z7, K3, K3 // and p3 may come before its last byte
	VPCMPEQB Z27, Z1, K3, K3 // after a quote
	VPCMPUB  $2, Z24, Z1, K4 // p1 <= 0x20: whitespace (or a control byte)
	KORQ     K4, K3, K3
	VPCMPEQB Z26, Z0, K3, K3

	// K4: card bytes (digits, space, dash).
	VPSUBB   Z28, Z0, Z4
	VPCMPUB  $2, Z29, Z4, K4
	VPCMPEQB Z24, Z0, K5
	KORQ     K5, K4, K4
	VPCMPEQB Z30, Z0, K5
	KORQ     K5, K4, K4

	// 13 card bytes in a row in this block (R9), or across its start (R10:
	// the last 32 of the block before, the first 32 of this one).
	KMOVQ K4, R9
	MOVQ  R8, R10
	SHRQ  $32, R10
	MOVQ  R9, R11
	SHLQ  $32, R11
	ORQ   R11, R10
	MOVQ  R9, R8
	XORL  AX, AX
	MOVQ  R9, R11
	RUNS13(R11)
	RUNS13(R10)

	KMOVQ K1, R11
	ORQ   R11, AX
	JNZ   hit512
	KMOVQ K3, R9
	KMOVQ K2, R10
	MOVQ  R9, R11
	ORQ   R10, R11
	JNZ   found512
	ADDQ  $64, BX
	JMP   loop512

found512:
	XORL AX, AX
	JMP  out512

hit512:
	XORL R9, R9
	XORL R10, R10
	MOVL $1, AX
	JMP  out512

done512:
	XORL R9, R9
	XORL R10, R10
	XORL AX, AX

out512:
	MOVQ BX, at+48(FP)
	MOVQ R9, colons+56(FP)
	MOVQ R10, bes+64(FP)
	MOVB AX, hit+72(FP)
	MOVQ R8, cards+80(FP)
	VZEROUPPER
	RET
