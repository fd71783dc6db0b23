// boltedit: apply a few edits to a bbolt file in ONE read-write transaction (a test tool).
//
//	boltedit DB OP ARGS... [+ OP ARGS...]
//	  delete-bucket B... NAME   delete bucket NAME (it must exist) inside the bucket path B...
//	  delete-key    B... KEY    delete key KEY (it must exist and not be a bucket)
//	  put           B... KEY V  set KEY to V
//	  copy-bucket   B... SRC DST deep-copy bucket SRC to a new sibling DST (values and sub-buckets)
//
// An argument "hex:..." is bytes in hex, any other is taken as is. All ops commit together or
// not at all, as one containerd transaction would: tests use it to make, on a copy of a real
// store, the state a crash between two of containerd's transactions leaves behind.
package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

func arg(s string) []byte {
	if strings.HasPrefix(s, "hex:") {
		b, err := hex.DecodeString(s[4:])
		if err != nil {
			panic(fmt.Sprintf("bad hex %q: %v", s, err))
		}
		return b
	}
	return []byte(s)
}

func bucket(tx *bolt.Tx, path []string) (*bolt.Bucket, error) {
	b := tx.Bucket(arg(path[0]))
	for _, p := range path[1:] {
		if b == nil {
			break
		}
		b = b.Bucket(arg(p))
	}
	if b == nil {
		return nil, fmt.Errorf("no bucket %q", path)
	}
	return b, nil
}

func copyBucket(src, dst *bolt.Bucket) error {
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(k, v)
		}
		sub, err := dst.CreateBucket(k)
		if err != nil {
			return err
		}
		return copyBucket(src.Bucket(k), sub)
	})
}

func apply(tx *bolt.Tx, op string, a []string) error {
	n := map[string]int{"delete-bucket": 1, "delete-key": 1, "put": 2, "copy-bucket": 2}[op]
	if n == 0 || len(a) < n+1 {
		return fmt.Errorf("usage: %s BUCKET... ARGS (got %q)", op, a)
	}
	b, err := bucket(tx, a[:len(a)-n])
	if err != nil {
		return err
	}
	k := arg(a[len(a)-n])
	switch op {
	case "delete-bucket":
		return b.DeleteBucket(k)
	case "delete-key":
		if b.Get(k) == nil {
			return fmt.Errorf("no key %q in %q", k, a[:len(a)-1])
		}
		return b.Delete(k)
	case "put":
		return b.Put(k, arg(a[len(a)-1]))
	}
	src := b.Bucket(k)
	if src == nil {
		return fmt.Errorf("no bucket %q in %q", k, a[:len(a)-2])
	}
	dst, err := b.CreateBucket(arg(a[len(a)-1]))
	if err != nil {
		return err
	}
	return copyBucket(src, dst)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: boltedit DB OP ARGS... [+ OP ARGS...]")
		os.Exit(2)
	}
	var ops [][]string // the arguments split at each "+"
	start := 2
	for i := 2; i <= len(os.Args); i++ {
		if i == len(os.Args) || os.Args[i] == "+" {
			ops = append(ops, os.Args[start:i])
			start = i + 1
		}
	}
	// A second's wait for bbolt's flock: a live containerd holds it; fail rather than block.
	db, err := bolt.Open(os.Args[1], 0o600, &bolt.Options{Timeout: time.Second})
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, f := range ops {
				if len(f) == 0 {
					return fmt.Errorf("empty op")
				}
				if err := apply(tx, f[0], f[1:]); err != nil {
					return fmt.Errorf("%s: %w", f[0], err)
				}
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "boltedit:", err)
		os.Exit(1)
	}
}
