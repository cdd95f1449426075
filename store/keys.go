package store

import (
	"encoding/binary"
	"fmt"
)

var (
	prefixRecord    = []byte("d/")
	prefixOutbox    = []byte("o/")
	prefixWatermark = []byte("w/")
	prefixConflict  = []byte("c/")
	prefixConfIndex = []byte("k/")

	keyActor = []byte("m/actor")
	// keySeqs holds the last outbox seq, own-origin seq and conflict-log
	// seq assigned (8 bytes each). Only trims write it (they may delete the
	// newest outbox entries); Open derives newer values from the entries.
	keySeqs    = []byte("m/seqs")
	keyTrimmed = []byte("m/trimmed") // outbox entries <= this are deleted
	// keyObserved holds the last pending-observation number assigned (8
	// bytes), written by each observer turn as it deletes observations:
	// a store opened with none pending goes on numbering from there, as
	// every other node of its region does.
	keyObserved = []byte("m/observed")
)

func recordKey(key string) []byte { return append(append([]byte{}, prefixRecord...), key...) }

func seqKey(prefix []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte{}, prefix...), seq)
}

func seqFromKey(prefix, k []byte) uint64 { return binary.BigEndian.Uint64(k[len(prefix):]) }

func watermarkKey(actor string) []byte {
	return append(append([]byte{}, prefixWatermark...), actor...)
}

func conflictIndexKey(key string, seq uint64) []byte {
	b := append(append([]byte{}, prefixConfIndex...), key...)
	return binary.BigEndian.AppendUint64(append(b, 0), seq)
}

func conflictIndexPrefix(key string) []byte {
	return append(append(append([]byte{}, prefixConfIndex...), key...), 0)
}

func encodeU64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func encodeSeqs(seq, oseq, cseq uint64) []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, oseq)
	return binary.BigEndian.AppendUint64(b, cseq)
}

func decodeSeqs(b []byte) (seq, oseq, cseq uint64, err error) {
	if len(b) != 24 {
		return 0, 0, 0, fmt.Errorf("corrupt sequences: %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), binary.BigEndian.Uint64(b[16:]), nil
}

func decodeU64(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("corrupt counter: %d bytes", len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
