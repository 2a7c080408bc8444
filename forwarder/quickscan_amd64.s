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

	// 13 card bytes in a row in this block and the one before: R13 has a bit
	// for each run of 2, then 4, 8, 12 and 13 starting there.
	VPMOVMSKB Y7, R9
	MOVQ      R9, R10
	SHLQ      $32, R10
	ORQ       R8, R10
	MOVL      R9, R8
	MOVQ      R10, R11
	SHRQ      $1, R11
	ANDQ      R10, R11
	MOVQ      R11, R12
	SHRQ      $2, R12
	ANDQ      R11, R12
	MOVQ      R12, R13
	SHRQ      $4, R13
	ANDQ      R12, R13
	SHRQ      $8, R12
	ANDQ      R12, R13
	SHRQ      $12, R10
	ANDQ      R10, R13

	VPMOVMSKB Y4, AX
	ORQ       R13, AX
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
