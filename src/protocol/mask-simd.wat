;; XOR of a memory range with a repeated 32-bit key, 16 bytes at a time
;; (WebAssembly SIMD). Compiled into mask-simd.ts as bytes; the unit test
;; test/unit/protocol/mask.test.ts checks that the bytes match this source.
(module
  (memory (export "memory") 1)
  ;; xor [ptr, ptr+len) with the key word repeated; len a multiple of 16
  (func (export "mask") (param $ptr i32) (param $len i32) (param $key i32)
    (local $end i32) (local $k v128)
    (local.set $k (i32x4.splat (local.get $key)))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (block $done
      (loop $loop
        (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
        (v128.store (local.get $ptr) (v128.xor (v128.load (local.get $ptr)) (local.get $k)))
        (local.set $ptr (i32.add (local.get $ptr) (i32.const 16)))
        (br $loop)))))
