package projection

import "time"

func timeSeconds(s int64) time.Duration { return time.Duration(s) * time.Second }
