package pbxsim

// stasisStart puts a channel into a Stasis application. StasisStart (and
// StasisEnd) go only to websockets subscribed to that application.
func (s *Server) stasisStart(c *channel, app string) {
	c.stasis = app
	e := ariEv("StasisStart", obj{{"args", []string{}}, {"channel", c.ariJSON()}}, c)
	e.onlyApp = app
	s.ari(e)
}

func (s *Server) stasisEnd(c *channel) {
	if c.stasis == "" {
		return
	}
	e := ariEv("StasisEnd", obj{{"channel", c.ariJSON()}}, c)
	e.onlyApp = c.stasis
	s.ari(e)
	c.stasis = ""
}

// monitorApp plays the part of the capture's Stasis client for
// monitor-app: it answers (done by the caller of monitorApp), sets
// MONITOR_SEEN and plays sound:heldout-beep (ari/rest-control.jsonl), so
// a Stasis call produces the captured event sequence.
func (s *Server) monitorApp(c *channel) {
	s.varSet(c, "MONITOR_SEEN", "yes")
	s.playbackSeq++
	pb := func(state string) obj {
		return obj{{"playback", obj{{"id", "pb-" + itoa(s.playbackSeq)}, {"media_uri", "sound:heldout-beep"},
			{"target_uri", "channel:" + c.uniqueid}, {"language", "en"}, {"state", state}}}}
	}
	for _, p := range [][2]string{{"PlaybackStarted", "playing"}, {"PlaybackFinished", "done"}} {
		e := ariEv(p[0], pb(p[1]), c)
		e.onlyApp = c.stasis
		s.ari(e)
	}
}
