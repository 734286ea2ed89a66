// Parses an Adaptive Card (standard input) with Microsoft's adaptivecards
// package and prints every parse and validation event as JSON.
const AC = require(process.env.AC_JS);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const card = new AC.AdaptiveCard();
const ctx = new AC.SerializationContext();
card.parse(input, ctx);
const events = [];
for (let i = 0; i < ctx.eventCount; i++) { const e = ctx.getEventAt(i); events.push({phase: e.phase, event: e.event, message: e.message}); }
for (const e of card.validateProperties().validationEvents) events.push({phase: e.phase, event: e.event, message: e.message});
console.log(JSON.stringify({version: card.version ? card.version.toString() : "", events, items: card.getItemCount(), actions: card.getActionCount()}));
