package agentapi

import (
	"context"
	"net/http"

	"github.com/teeup/teeup/agent/decide"
)

// PathFlagDay is the agent's flag-day state: GET → FlagDayState (a read).
const PathFlagDay = "/v1/flagday"

// FlagDayState is a host's journalled part of a flag day (package
// agent/decide).
type FlagDayState = decide.State

// FlagDay returns the agent's flag-day state.
func (c *Client) FlagDay(ctx context.Context) (*FlagDayState, error) {
	var s FlagDayState
	return &s, c.do(ctx, http.MethodGet, PathFlagDay, nil, &s)
}
