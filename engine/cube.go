package engine

import "github.com/presenced/presenced/presence"

// cell counts the connected users of one (role, availability, chat) combination,
// and the sums of their slots when the chat availability puts them in
// production. Sums are int64: 1000 slots times millions of users overflows 32 bits.
type cell struct {
	n, maxSlots, curSlots int64
}

// cube is the fixed-size counter block kept for a tenant and for each of its
// ids: every connected user counted by it sits in exactly one cell, so any
// combination of role, availability and chat filters is a sum of cells.
// 6 x 3 x 3 cells of 24 bytes: 1296 bytes.
type cube [presence.NumRoles][presence.NumStatuses][presence.NumStatuses]cell

// point is a user's place in a cube and what the user adds to it.
type point struct {
	role         presence.Role
	availability presence.Status
	chat         presence.Status
	maxSlots     uint16
	curSlots     uint16
}

func pointOf(s *presence.State) point {
	return point{s.Role, s.Availability, s.Chat, s.MaxSlots, s.CurrentSlots}
}

func (c *cube) add(p point, sign int64) {
	x := &c[p.role][p.availability][p.chat]
	x.n += sign
	if p.chat.InProduction() {
		x.maxSlots += sign * int64(p.maxSlots)
		x.curSlots += sign * int64(p.curSlots)
	}
}

// masks say which roles, availabilities and chat availabilities a filter
// keeps, one bit per value.
type masks struct{ roles, availability, chat uint8 }

func (m masks) match(p point) bool {
	return m.roles&(1<<p.role) != 0 && m.availability&(1<<p.availability) != 0 && m.chat&(1<<p.chat) != 0
}

func (m masks) empty() bool { return m.roles == 0 || m.availability == 0 || m.chat == 0 }

// sum adds the cells that m keeps to ind; it reads at most 54 cells whatever
// the number of users.
func (c *cube) sum(m masks, ind *Indicator) {
	for r := range presence.NumRoles {
		if m.roles&(1<<r) == 0 {
			continue
		}
		for a := range presence.NumStatuses {
			if m.availability&(1<<a) == 0 {
				continue
			}
			for ch := range presence.NumStatuses {
				if m.chat&(1<<ch) == 0 {
					continue
				}
				x := &c[r][a][ch]
				ind.Connected += x.n
				ind.Chat[ch] += x.n
				if presence.Status(ch).InProduction() {
					ind.InProduction += x.n
					ind.MaxSlots += x.maxSlots
					ind.CurrentSlots += x.curSlots
				}
			}
		}
	}
}

// add counts one user at p into ind, or takes it out with sign -1.
func (ind *Indicator) add(p point, sign int64) {
	ind.Connected += sign
	ind.Chat[p.chat] += sign
	if p.chat.InProduction() {
		ind.InProduction += sign
		ind.MaxSlots += sign * int64(p.maxSlots)
		ind.CurrentSlots += sign * int64(p.curSlots)
	}
}
