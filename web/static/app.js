// orderdesk's page: sign in, pick an account, watch its orders and positions live, build
// legs from the option chain, place baskets (and save them by name), exit positions, press the
// kill switch, and (admin) watch the supervision tree. Plain ES modules, no build step.

import { api, ApiError, session } from "./api.js";
import { Basket } from "./basket.js";
import { Blotter } from "./blotter.js";
import { OptionChain } from "./chain.js";
import { HealthView } from "./health.js";
import { OfflineWatch } from "./offline.js";
import { PositionsPanel } from "./positions.js";
import { SavedBaskets } from "./saved.js";
import { OrderStream } from "./stream.js";

const $ = (selector) => document.querySelector(selector);
const ACCOUNT_KEY = "orderdesk.account";

const state = { me: null, account: null, stream: null };

const blotter = new Blotter($("#blotter"), () => state.account);
const basket = new Basket($("#basket"), () => state.account);
const chain = new OptionChain($("#chain"), basket, () => state.account,
                              (instruments) => state.stream?.watch(instruments));
const saved = new SavedBaskets($("#saved"), basket);
const health = new HealthView($("#health"));
const positions = new PositionsPanel($("#positions-card"), () => state.account,
                                     () => blotter.openCount());
const offline = new OfflineWatch($("#offline"), {
  onOffline: () => {
    setBadge($("#upstream"), "upstream", "unknown", "orderdesk is not reachable from this page");
    $("#basket-submit").disabled = true;
  },
  onOnline: () => {
    $("#basket-submit").disabled = false;
  },
});

// For tests and for the curious: the live socket, the stream, and the page state.
window.__orderdesk = {
  get ws() { return state.stream?.ws ?? null; },
  get stream() { return state.stream; },
  get account() { return state.account; },
  get me() { return state.me; },
};

function setBadge(el, name, value, detail) {
  el.dataset.state = value;
  el.textContent = `${name}: ${value.replace("_", " ")}`;
  el.title = detail || el.title;
}

function showSignIn(message = "") {
  state.stream?.stop();
  state.stream = null;
  offline.reset();
  health.stop();
  state.me = null;
  $("#desk").hidden = true;
  $("#session").hidden = true;
  $("#signin-view").hidden = false;
  $("#token-error").textContent = message;
  $("#token").value = "";
  $("#token").focus();
}

async function signIn(token) {
  let me;
  try {
    me = await api("/me", { token });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      session.token = null;
      showSignIn("That token was refused.");
    } else {
      showSignIn(`Cannot sign in: ${err.message}`);
    }
    return;
  }
  session.token = token;
  state.me = me;
  $("#signin-view").hidden = true;
  $("#desk").hidden = false;
  $("#session").hidden = false;
  $("#who").textContent = me.admin ? "admin" : me.name;
  const select = $("#account");
  select.replaceChildren(...me.accounts.map((id) => new Option(id, id)));
  const remembered = sessionStorage.getItem(ACCOUNT_KEY);
  const account = me.accounts.includes(remembered) ? remembered : me.accounts[0];
  select.value = account ?? "";
  select.disabled = me.accounts.length < 2;
  if (me.admin) health.start();
  else health.stop();
  openAccount(account);
}

function openAccount(account) {
  state.stream?.stop();
  state.stream = null;
  offline.reset();
  state.account = account ?? null;
  blotter.reset([], null);
  positions.reset();
  saved.open(account);
  if (!account) {
    setBadge($("#link"), "stream", "refused", "no account is visible to this token");
    return;
  }
  sessionStorage.setItem(ACCOUNT_KEY, account);
  setBadge($("#upstream"), "upstream", "unknown");
  const stream = new OrderStream(account, {
    onSnapshot: (msg) => blotter.reset(msg.orders || [], msg.seq),
    onOrder: (msg) => {
      blotter.apply(msg);
      basket.observe(msg.order);
    },
    onPositions: (msg) => {
      positions.apply(msg);
      chain.tick(msg.watched || []);
    },
    onUpstream: (upstream) => setBadge($("#upstream"), "upstream", upstream),
    onLink: (link, detail) => {
      setBadge($("#link"), "stream", link, detail);
      offline.link(link);
    },
  });
  state.stream = stream;
  stream.start();
  positions.load(account);
  chain.open();
}

session.onUnauthorized = () => {
  session.token = null;
  showSignIn("Your token is no longer accepted; sign in again.");
};

$("#signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("#token").value.trim();
  if (!token) {
    $("#token-error").textContent = "Enter a token.";
    $("#token").focus();
    return;
  }
  $("#token-error").textContent = "";
  signIn(token);
});

$("#signout").addEventListener("click", () => {
  session.token = null;
  sessionStorage.removeItem(ACCOUNT_KEY);
  showSignIn();
});

$("#account").addEventListener("change", (event) => openAccount(event.target.value));

if (session.token) signIn(session.token);
else showSignIn();
