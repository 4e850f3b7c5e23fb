// Package flow holds the plain types that every stage of podflow's packet
// path shares: the record capture hands over, the decoded packet, the
// oriented flow, the endpoint identity and the projected series key.
//
// It imports nothing from podflow and nothing outside the standard library,
// so that every stage can depend on it and none depends on another stage.
package flow
