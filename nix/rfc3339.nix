# Unix seconds -> RFC 3339 UTC ("2026-08-03T18:38:27Z"), builtins only.
# nix2container wants RFC 3339 for `created`, and the image date must come
# from the commit (self.lastModified), never from the build clock.
# Days -> civil date: Howard Hinnant's days_from_civil inverse, for t >= 0.
t:
let
  inherit (builtins) div;
  mod = a: b: a - b * div a b;
  pad = n: if n < 10 then "0${toString n}" else toString n;

  days = div t 86400;
  secs = mod t 86400;

  z = days + 719468;
  era = div z 146097;
  doe = z - era * 146097;
  yoe = div (doe - div doe 1460 + div doe 36524 - div doe 146096) 365;
  doy = doe - (365 * yoe + div yoe 4 - div yoe 100);
  mp = div (5 * doy + 2) 153;
  day = doy - div (153 * mp + 2) 5 + 1;
  month = if mp < 10 then mp + 3 else mp - 9;
  year = yoe + era * 400 + (if month <= 2 then 1 else 0);

  hh = pad (div secs 3600);
  mm = pad (mod (div secs 60) 60);
  ss = pad (mod secs 60);
in
"${toString year}-${pad month}-${pad day}T${hh}:${mm}:${ss}Z"
