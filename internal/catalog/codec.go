package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/linuxvss/vss/internal/vss"
)

// Shadow records are the bulk of the catalog (a volume may have 512, a
// machine thousands), and every start reads them all, so they are stored in
// a compact binary form rather than JSON: version byte, then the fields in
// order — GUIDs as 16 bytes, strings and counts as uvarint-prefixed or
// uvarint, the creation time as varint nanoseconds since 1970.
const shadowCodecVersion = 1

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func marshalShadow(s *Shadow) []byte {
	b := make([]byte, 0, 256)
	b = append(b, shadowCodecVersion)
	b = append(b, s.ID[:]...)
	b = append(b, s.SetID[:]...)
	b = binary.AppendUvarint(b, uint64(s.SetCount))
	b = append(b, s.VolumeID[:]...)
	b = appendString(b, s.VolumePath)
	b = appendString(b, s.VolumeName)
	b = appendString(b, s.ShadowPath)
	b = appendString(b, s.StoragePath)
	b = append(b, s.StorageVolumeID[:]...)
	b = appendString(b, s.Provider)
	b = append(b, s.ProviderID[:]...)
	b = binary.AppendVarint(b, s.Created.UnixNano())
	b = binary.AppendUvarint(b, uint64(s.Context))
	b = binary.AppendUvarint(b, uint64(s.Attributes))
	b = appendString(b, s.OriginatingMachine)
	b = appendString(b, s.ServiceMachine)
	b = appendString(b, s.ExposedName)
	b = appendString(b, s.ExposedPath)
	if s.CrashConsistent {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return appendString(b, s.Owner)
}

var errShort = errors.New("truncated shadow record")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uuid() (u uuid.UUID) {
	if d.err != nil {
		return
	}
	if len(d.b) < 16 {
		d.err = errShort
		return
	}
	copy(u[:], d.b)
	d.b = d.b[16:]
	return
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.err = errShort
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func unmarshalShadow(b []byte) (Shadow, error) {
	var s Shadow
	if len(b) == 0 || b[0] != shadowCodecVersion {
		v := -1
		if len(b) > 0 {
			v = int(b[0])
		}
		return s, fmt.Errorf("shadow record of unknown version %d", v)
	}
	d := &decoder{b: b[1:]}
	s.ID = d.uuid()
	s.SetID = d.uuid()
	s.SetCount = int(d.uvarint())
	s.VolumeID = d.uuid()
	s.VolumePath = d.string()
	s.VolumeName = d.string()
	s.ShadowPath = d.string()
	s.StoragePath = d.string()
	s.StorageVolumeID = d.uuid()
	s.Provider = d.string()
	s.ProviderID = d.uuid()
	s.Created = time.Unix(0, d.varint()).UTC()
	s.Context = vss.Context(d.uvarint())
	s.Attributes = vss.Attr(d.uvarint())
	s.OriginatingMachine = d.string()
	s.ServiceMachine = d.string()
	s.ExposedName = d.string()
	s.ExposedPath = d.string()
	switch d.byte() {
	case 0:
	case 1:
		s.CrashConsistent = true
	default:
		if d.err == nil {
			d.err = errors.New("bad boolean in shadow record")
		}
	}
	s.Owner = d.string()
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d bytes after the shadow record", len(d.b))
	}
	if d.err != nil {
		return Shadow{}, d.err
	}
	return s, nil
}
