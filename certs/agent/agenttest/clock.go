// Package agenttest has test helpers for code that uses the agent: a fake
// clock whose timers fire when the test moves time.
package agenttest

import (
	"sync"
	"testing"
	"time"
)

// Clock is a settable agent.Clock. Timers fire when Advance passes them.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []timer
	added  chan time.Time // the deadline of each timer set
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// NewClock starts a fake clock at now.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now, added: make(chan time.Time, 1024)}
}

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives when the clock reaches now+d.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, timer{at, ch})
	}
	c.added <- at
	return ch
}

// Advance moves the clock to t (never back) and fires the timers due.
func (c *Clock) Advance(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(c.now) {
			tm.ch <- c.now
		} else {
			kept = append(kept, tm)
		}
	}
	c.timers = kept
}

// Jump moves the wall clock by d without firing any timer, the way a host
// resumed from suspend or an NTP step moves it: timers run on the monotonic
// clock, which did not see the jump, so each deadline moves by d too.
func (c *Clock) Jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for i := range c.timers {
		c.timers[i].at = c.timers[i].at.Add(d)
	}
}

// NextTimer waits (in real time, up to 10s) for a timer to be set and
// returns its deadline.
func (c *Clock) NextTimer(t testing.TB) time.Time {
	t.Helper()
	select {
	case at := <-c.added:
		return at
	case <-time.After(10 * time.Second):
		t.Fatal("no timer was set")
		return time.Time{}
	}
}
