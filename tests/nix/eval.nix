# Evaluates flake.nix's outputs with Nix alone (no nixpkgs needed, Nix 2.8 is
# enough): nixpkgs, crane, rust-overlay and nix2container are replaced by
# stubs whose signatures copy the pinned sources (revs in flake.lock):
#   - nix2container buildImage/buildLayer: the exact formal arguments of
#     default.nix at 20d3395 (an unknown argument is an evaluation error);
#   - crane builders: the arguments each lib/<builder>.nix at 2c71e19 reads,
#     plus plain derivation attributes (crane passes the rest through);
#   - rust-overlay: the `override` arguments of lib/rust-bin.nix at fd2ebb9.
# With N2C_SRC and/or CRANE_SRC set to checkouts of those revs, the real
# nix2container default.nix and crane builder files are evaluated instead,
# and the summary shows the cargo commands crane would run.
#
#   nix-instantiate --eval --strict --json tests/nix/eval.nix [--arg dirty true]
{
  dirty ? false,
  n2cSrc ? builtins.getEnv "N2C_SRC",
  craneSrc ? builtins.getEnv "CRANE_SRC",
}:
let
  inherit (builtins)
    attrNames
    concatMap
    filter
    functionArgs
    head
    intersectAttrs
    isList
    listToAttrs
    mapAttrs
    match
    split
    ;

  # Fails evaluation with `msg` unless `cond`.
  check = cond: msg: x: if cond then x else throw "eval.nix: ${msg}";
  unknown = allowed: args: filter (n: !(builtins.elem n allowed)) (attrNames args);
  only =
    what: allowed: args:
    check (unknown allowed args == [ ]) "${what}: unknown argument(s) ${toString (unknown allowed args)}";

  # A stand-in derivation: interpolates to a store path, keeps its attributes.
  drv =
    name: attrs:
    attrs
    // {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
      overrideAttrs = f: drv name (attrs // f attrs);
    };

  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);

  # The part of nixpkgs' lib the flake, nix2container and crane's builders use.
  lib = rec {
    genAttrs = names: f: listToAttrs (map (name: { inherit name; value = f name; }) names);
    inherit mapAttrs;
    mapAttrsToList = f: attrs: map (n: f n attrs.${n}) (attrNames attrs);
    optional = c: x: if c then [ x ] else [ ];
    optionalAttrs = c: a: if c then a else { };
    optionalString = c: s: if c then s else "";
    importTOML = p: builtins.fromTOML (builtins.readFile p);
    importJSON = p: builtins.fromJSON (builtins.readFile p);
    getExe = d: "${d}/bin/${d.meta.mainProgram}";
    lists.optional = optional;
    # lib/strings.nix: quoted only when it has to be.
    escapeShellArg =
      arg:
      let
        string = toString arg;
      in
      if match "[[:alnum:],._+:@%/-]+" string == null then
        "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] string}'"
      else
        string;
    escapeShellArgs = concatMapStringsSep " " escapeShellArg;
    strings.escapeShellArg = escapeShellArg;
    inherit (builtins) any all concatStringsSep;
    # lib/meta.nix availableOn (string patterns of meta.platforms only;
    # `broken` is not looked at, as in nixpkgs).
    meta.availableOn =
      platform: pkg:
      ((!pkg ? meta.platforms) || builtins.elem platform.system pkg.meta.platforms)
      && !(builtins.elem platform.system (pkg.meta.badPlatforms or [ ]));
    warnIf = c: msg: x: if c then builtins.trace "warning: ${msg}" x else x;
    throwIf = c: msg: x: if c then throw msg else x;
    traceIf = c: msg: x: if c then builtins.trace msg x else x;
    hasSuffix =
      suffix: s:
      let
        n = builtins.stringLength s;
        k = builtins.stringLength suffix;
      in
      k <= n && builtins.substring (n - k) k s == suffix;
    toList = x: if isList x then x else [ x ];
    defaultTo = d: x: if x == null then d else x;
    flatten = x: if isList x then concatMap flatten x else [ x ];
    toLower = builtins.replaceStrings (chars "ABCDEFGHIJKLMNOPQRSTUVWXYZ") (
      chars "abcdefghijklmnopqrstuvwxyz"
    );
    splitString = sep: s: filter builtins.isString (split sep s);
    concatMapStringsSep = sep: f: l: builtins.concatStringsSep sep (map f l);
    isDerivation = x: (x.type or null) == "derivation";
    isFunction = builtins.isFunction;
    genList = builtins.genList;
    asserts.assertMsg = c: msg: c || throw msg;
    cleanSourceWith = { src, ... }: src;
    fileset = {
      toSource =
        { root, fileset }:
        check (fileset != null) "fileset.toSource: empty fileset" {
          outPath = toString root;
          _isLibCleanSourceWith = true;
          origSrc = root;
          inherit fileset;
        };
      unions = filesets: check (builtins.all (f: builtins.isAttrs f || builtins.pathExists f) filesets) "fileset.unions: a path does not exist" filesets;
      fileFilter = predicate: path: check (builtins.pathExists path) "fileset.fileFilter: ${toString path} does not exist" {
        inherit predicate path;
      };
      intersection = a: b: [ a b ];
      gitTracked = path: { inherit path; };
    };
  };

  pkgsFor =
    system:
    let
      cpu = head (split "-" system);
      isLinux = match ".*-linux" system != null;
      tool = name: drv name { meta.mainProgram = name; };
    in
    {
      inherit lib;
      stdenv = {
        hostPlatform = {
          inherit system isLinux;
          isDarwin = !isLinux;
          parsed.cpu.name = cpu;
        };
        isDarwin = !isLinux;
      };
      go.GOARCH = if cpu == "x86_64" then "amd64" else "arm64";
      # Like mkDerivation, passthru attributes end up on the result.
      runCommand = name: env: script: drv name (env // { inherit script; } // env.passthru or { });
      runCommandLocal = name: env: script: drv name (env // { inherit script; } // env.passthru or { });
      writeText = name: text: drv name { inherit text; };
      writeShellApplication =
        {
          name,
          text,
          runtimeInputs ? [ ],
          excludeShellChecks ? [ ],
        }:
        drv name { inherit text runtimeInputs excludeShellChecks; };
      buildGoModule = args: drv "${args.pname}-${args.version}" args;
      fetchpatch2 = args: drv "patch" args;
      skopeo = drv "skopeo" { nativeBuildInputs = [ ]; };
      patchutils = tool "patchutils";
      cacert = drv "nss-cacert" { };
      jq = tool "jq";
      deadnix = tool "deadnix";
      cargo-nextest = tool "cargo-nextest";
      cargo-watch = tool "cargo-watch";
      # pkgs/by-name/ca/cargo-llvm-cov/package.nix (nixpkgs 0442288, stored
      # version): meta.broken = !(hostPlatform.isLinux && !targetPlatform.isRedox).
      # Like nixpkgs (pkgs/stdenv/generic/check-meta.nix), using a broken
      # package's store path is an evaluation error.
      cargo-llvm-cov =
        drv "cargo-llvm-cov" {
          meta = {
            mainProgram = "cargo-llvm-cov";
            broken = !isLinux;
          };
        }
        // lib.optionalAttrs (!isLinux) {
          outPath = throw "cargo-llvm-cov is marked as broken on ${system}";
        };
      cargo-auditable = tool "cargo-auditable";
      binutils-unwrapped = tool "binutils";
      # pkgs/top-level/stage.nix: pkgsStatic is the static musl cross set on
      # Linux (crossSystem parsed = makeMuslParsedPlatform), the same set
      # elsewhere; cc-wrapper's targetPrefix is "<target config>-" only when
      # the target differs from the host.
      pkgsStatic.stdenv.cc = drv "static-cc-wrapper" {
        targetPrefix = if isLinux then "${cpu}-unknown-linux-musl-" else "";
      };
      cargo-deny = tool "cargo-deny";
      cargo-audit = tool "cargo-audit";
      docker-compose = tool "docker-compose";
      nixfmt = tool "nixfmt";
      nixfmt-tree = tool "treefmt";
    };

  rust-overlay.lib.mkRustBin =
    {
      distRoot ? "https://static.rust-lang.org/dist",
    }:
    _pkgs:
    let
      profile =
        channel: name: args:
        drv "rust-${name}-${channel}" (
          args
          // {
            # lib/rust-bin.nix mkProfile: makeOverridable over exactly these.
            override =
              new:
              only "rust-overlay override" [
                "extensions"
                "targets"
                "targetExtensions"
                "enableLibsecret"
              ] new (profile channel name (args // new));
          }
        );
    in
    {
      fromRustupToolchainFile =
        path:
        let
          t = (lib.importTOML path).toolchain;
        in
        check (distRoot != "") "distRoot" (
          profile t.channel (t.profile or "default") {
            extensions = t.components or [ ];
            targets = t.targets or [ ];
            targetExtensions = [ ];
            enableLibsecret = false;
          }
        );
    };

  # Plain derivation attributes the flake passes to crane builders.
  derivationArgs = [
    "src"
    "pname"
    "version"
    "strictDeps"
    "nativeBuildInputs"
    "meta"
    "env"
    "doCheck"
    "doInstallCargoArtifacts"
    "CARGO_BUILD_TARGET"
    "CARGO_BUILD_RUSTFLAGS"
    "CARGO_PROFILE"
    "__darwinAllowLocalNetworking"
    # Read by src/lib.rs (option_env!): the revision the binaries report.
    "JESSY_GIT_REVISION"
    # cc-rs's C compiler and archiver for the musl target.
    "CC_x86_64_unknown_linux_musl"
    "AR_x86_64_unknown_linux_musl"
    "CC_aarch64_unknown_linux_musl"
    "AR_aarch64_unknown_linux_musl"
  ];
  # What each crane 2c71e19 lib/<builder>.nix reads from its arguments.
  craneArgs = {
    buildDepsOnly = [
      "cargoBuildCommand"
      "cargoCheckCommand"
      "cargoExtraArgs"
      "cargoBuildExtraArgs"
      "cargoCheckExtraArgs"
      "cargoTestCommand"
      "cargoTestExtraArgs"
      "dummySrc"
      "cargoVendorDir"
    ];
    buildPackage = [
      "cargoArtifacts"
      "cargoBuildCommand"
      "cargoExtraArgs"
      "cargoBuildExtraArgs"
      "cargoTestCommand"
      "cargoTestExtraArgs"
      "installPhaseCommand"
      "cargoVendorDir"
    ];
    # Not cargoExtraArgs: mkCargoDerivation does not read it, it would only
    # become an unused environment variable.
    mkCargoDerivation = [
      "cargoArtifacts"
      "buildPhaseCargoCommand"
      "checkPhaseCargoCommand"
      "installPhaseCommand"
      "pnameSuffix"
      "cargoVendorDir"
    ];
    cargoNextest = [
      "cargoArtifacts"
      "cargoExtraArgs"
      "cargoLlvmCovExtraArgs"
      "cargoNextestExtraArgs"
      "cargoNextestArchiveExtraArgs"
      "cargoNextestPartitionsExtraArgs"
      "partitions"
      "partitionType"
      "withLlvmCov"
    ];
    cargoClippy = [
      "cargoArtifacts"
      "cargoClippyExtraArgs"
      "cargoExtraArgs"
    ];
    cargoDoc = [
      "cargoArtifacts"
      "cargoDocExtraArgs"
      "cargoExtraArgs"
      "docInstallRoot"
    ];
    cargoFmt = [
      "cargoExtraArgs"
      "rustFmtExtraArgs"
    ];
    cargoAudit = [
      "advisory-db"
      "cargoAuditExtraArgs"
    ];
    cargoDeny = [
      "cargoDenyExtraArgs"
      "cargoDenyChecks"
      "cargoExtraArgs"
    ];
  };
  # Builders that leave `cargoArtifacts` to the caller (mkCargoDerivation
  # requires it).
  needArtifacts = [
    "mkCargoDerivation"
    "cargoNextest"
    "cargoClippy"
    "cargoDoc"
  ];

  craneFor =
    pkgs: toolchain:
    let
      hook = name: drv name { };
      crateNameFromCargoToml =
        { src, ... }:
        let
          p = (lib.importTOML (src.origSrc + "/Cargo.toml")).package;
        in
        {
          pname = p.name;
          inherit (p) version;
        };
      # Records the final arguments; requires what crane's requires.
      mkCargoDerivation =
        {
          cargoArtifacts,
          buildPhaseCargoCommand,
          ...
        }@args:
        drv "${args.pname}${args.pnameSuffix or ""}-${args.version}" (
          args // { inherit cargoArtifacts buildPhaseCargoCommand; }
        );
      scope = {
        inherit lib pkgs crateNameFromCargoToml;
        inherit (pkgs)
          cargo-nextest
          cargo-llvm-cov
          cargo-audit
          cargo-deny
          runCommand
          ;
        cargo = toolchain;
        clippy = toolchain;
        rustc = toolchain;
        rustfmt = toolchain;
        mkCargoDerivation = mkCargoDerivation;
        buildDepsOnly = self.buildDepsOnly;
        mkDummySrc = _: "/nix/store/dummy-src";
        vendorCargoDeps = _: drv "vendor-cargo-deps" { };
        installFromCargoBuildLogHook = hook "installFromCargoBuildLogHook";
        removeReferencesToVendoredSourcesHook = hook "removeReferencesToVendoredSourcesHook";
        removeReferencesToRustToolchainHook = hook "removeReferencesToRustToolchainHook";
      };
      real =
        name:
        let
          f = import "${craneSrc}/lib/${name}.nix";
        in
        f (intersectAttrs (functionArgs f) scope);
      stub =
        name: args:
        if name == "mkCargoDerivation" then
          mkCargoDerivation args
        else
          drv "${args.pname}-${name}" (args // { builder = name; });
      builder =
        name: args:
        let
          checked = only "crane ${name}" (craneArgs.${name} ++ derivationArgs) args (
            check (
              !(builtins.elem name needArtifacts) || args ? cargoArtifacts
            ) "crane ${name}: cargoArtifacts is required" args
          );
          result = if craneSrc == "" || name == "mkCargoDerivation" then stub name checked else real name checked;
        in
        result // { craneBuilder = name; craneArgs = checked; };
      self = mapAttrs (name: _: builder name) craneArgs // {
        inherit (scope) removeReferencesToVendoredSourcesHook removeReferencesToRustToolchainHook;
        inherit crateNameFromCargoToml;
        overrideToolchain = f: craneFor pkgs (f pkgs);
        fileset.commonCargoSources = root: check (builtins.pathExists (root + "/Cargo.toml")) "commonCargoSources: no Cargo.toml" { inherit root; };
        devShell =
          {
            checks ? { },
            inputsFrom ? [ ],
            packages ? [ ],
            ...
          }@args:
          only "crane devShell" [ "checks" "inputsFrom" "packages" ] args (
            drv "devshell" {
              inherit checks inputsFrom;
              packages = [ toolchain ] ++ packages;
            }
          );
        inherit toolchain;
      };
    in
    self;

  # nix2container 20d3395 default.nix: buildLayer and buildImage have no
  # `...`, so these formals are exactly the accepted arguments.
  n2cStub = pkgs: {
    skopeo-nix2container = drv "skopeo-nix2container" { };
    nix2container = {
      buildLayer =
        {
          deps ? [ ],
          copyToRoot ? null,
          ignore ? null,
          layers ? [ ],
          reproducible ? true,
          perms ? [ ],
          maxLayers ? 1,
          contents ? null,
          metadata ? {
            created_by = "nix2container";
          },
        }:
        drv "layers.json" { nestedLayers = [ ]; };
      buildImage =
        {
          name,
          tag ? null,
          config ? { },
          layers ? [ ],
          copyToRoot ? null,
          fromImage ? "",
          arch ? pkgs.go.GOARCH,
          perms ? [ ],
          maxLayers ? 1,
          initializeNixDatabase ? false,
          nixUid ? 0,
          nixGid ? 0,
          created ? "0001-01-01T00:00:00Z",
          contents ? null,
          meta ? { },
        }:
        let
          image = drv "image-${name}.json" {
            # As default.nix: a null fromImage fails here ("cannot coerce null").
            script = "nix2container image $out ${
              lib.optionalString (fromImage != "") "--from-image ${fromImage}"
            } --arch ${arch} --created ${created}";
            imageName = lib.toLower name;
            imageTag = if tag == null then "hash" else tag;
            copyToDockerDaemon = drv "copy-to-docker-daemon" { };
            copyToRegistry = drv "copy-to-registry" { };
            copyTo = drv "copy-to" { };
          };
        in
        image;
    };
  };

  n2cFor =
    system:
    let
      pkgs = pkgsFor system;
    in
    recordArgs (if n2cSrc == "" then n2cStub pkgs else import "${n2cSrc}/default.nix" { inherit pkgs; });
  # Keeps the flake's arguments on the results, for the summary below.
  recordArgs =
    n2c:
    n2c
    // {
      nix2container = n2c.nix2container // {
        buildLayer = args: n2c.nix2container.buildLayer args // { inherit args; };
        # nix2container's Go side parses `created` with time.RFC3339.
        buildImage =
          args:
          check (
            match "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z" (args.created or "") != null
          ) "buildImage ${args.name}: created is not RFC 3339" (n2c.nix2container.buildImage args)
          // {
            inherit args;
          };
      };
    };

  selfStub =
    {
      lastModified = 1785782307;
      outPath = toString ../..;
    }
    // lib.optionalAttrs (!dirty) { rev = "0123456789abcdef0123456789abcdef01234567"; };

  flake = import ../../flake.nix;
  outputs = flake.outputs {
    self = selfStub;
    nixpkgs = {
      inherit lib;
      legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] pkgsFor;
    };
    crane.mkLib = pkgs: craneFor pkgs null;
    nix2container.packages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ] n2cFor;
    inherit rust-overlay;
    advisory-db = "/nix/store/00000000000000000000000000000000-advisory-db";
  };

  # OCI image-spec v1.1.1 ImageConfig (what nix2container decodes `config`
  # into): any other key would be dropped silently.
  ociConfigKeys = [
    "User"
    "ExposedPorts"
    "Env"
    "Entrypoint"
    "Cmd"
    "Volumes"
    "WorkingDir"
    "Labels"
    "StopSignal"
    "ArgsEscaped"
  ];
  permKeys = [
    "path"
    "regex"
    "mode"
    "uid"
    "gid"
    "uname"
    "gname"
  ];

  names = attrs: attrNames attrs;
  summarizeCrane =
    d:
    {
      builder = d.craneBuilder;
      cargoArtifacts = if d.craneArgs.cargoArtifacts or null == null then null else "${d.craneArgs.cargoArtifacts}";
    }
    // intersectAttrs {
      cargoExtraArgs = null;
      CARGO_BUILD_TARGET = null;
      CARGO_BUILD_RUSTFLAGS = null;
      CARGO_PROFILE = null;
      cargoClippyExtraArgs = null;
      cargoLlvmCovExtraArgs = null;
      withLlvmCov = null;
      env = null;
      doCheck = null;
      pnameSuffix = null;
      advisory-db = null;
      cargoAuditExtraArgs = null;
      cargoBuildCommand = null;
      JESSY_GIT_REVISION = null;
      CC_x86_64_unknown_linux_musl = null;
      AR_x86_64_unknown_linux_musl = null;
      CC_aarch64_unknown_linux_musl = null;
      AR_aarch64_unknown_linux_musl = null;
    } d.craneArgs
    // {
      nativeBuildInputs = map (p: p.name) (d.craneArgs.nativeBuildInputs or [ ]);
    }
    // intersectAttrs {
      buildPhaseCargoCommand = null;
      checkPhaseCargoCommand = null;
    } d;
  craneSummaries =
    attrs:
    builtins.foldl' (
      acc: n: if attrs.${n} ? craneBuilder then acc // { ${n} = summarizeCrane attrs.${n}; } else acc
    ) { } (names attrs);
  summarizeImage =
    image:
    let
      a = image.args;
      layerArgs = map (l: l.args or { }) (a.layers or [ ]);
    in
    check (builtins.all (k: builtins.elem k ociConfigKeys) (names a.config))
      "image ${a.name}: config key outside the OCI ImageConfig: ${toString (unknown ociConfigKeys a.config)}"
      (
        check (builtins.all (p: unknown permKeys p == [ ]) (concatMap (l: l.perms or [ ]) layerArgs ++ (a.perms or [ ])))
          "image ${a.name}: unknown perms key"
          {
            inherit (image) imageName imageTag;
            inherit (a) created config;
            json = "${image}";
            inherit (image) script;
            copyToRoot = map (p: p.name) (lib.toList a.copyToRoot);
            perms = map (p: p // { path = p.path.name; }) (a.perms or [ ]);
            layers = map (l: {
              copyToRoot = map (p: p.name) (lib.toList (l.copyToRoot or [ ]));
              perms = map (p: p // { path = p.path.name; }) (l.perms or [ ]);
            }) layerArgs;
            passthru = map (n: "${image.${n}}") [
              "copyToDockerDaemon"
              "copyToRegistry"
              "copyTo"
            ];
          }
      );

  perSystem = mapAttrs (system: packages: {
    packages = names packages;
    checks = names outputs.checks.${system};
    apps = mapAttrs (_: a: { inherit (a) type program; }) outputs.apps.${system};
    # The store paths are forced, as instantiating the shell would.
    devShell = map (p: builtins.seq p.outPath p.name) outputs.devShells.${system}.default.packages;
    devShellChecks = names outputs.devShells.${system}.default.checks;
    formatter = outputs.formatter.${system}.name;
    toolchain = {
      inherit (head outputs.devShells.${system}.default.packages) extensions targets;
    };
    crane = craneSummaries (outputs.checks.${system} // packages);
  }) outputs.packages;
in
{
  inputs = flake.inputs;
  systems = names outputs.packages;
  inherit perSystem;
  deps = mapAttrs (_: p: summarizeCrane p.jessy.craneArgs.cargoArtifacts) outputs.packages;
  images = mapAttrs (_: p: mapAttrs (_: summarizeImage) (intersectAttrs {
    jessy-core-image = null;
    jessy-api-image = null;
    jessy-test-image = null;
  } p)) outputs.packages;
  # The source fileset of the packages: exact files (relative to the
  # repository) and, for each extension filter, its directory and which of
  # these extensions it keeps.
  source =
    let
      root = toString ../..;
      rel = p: builtins.substring (builtins.stringLength root + 1) (-1) (toString p);
      exts = [
        "rs"
        "toml"
        "feature"
        "json"
        "lock"
        "md"
        "nix"
      ];
      describe =
        f:
        if builtins.isAttrs f && f ? predicate then
          {
            dir = rel f.path;
            keeps = filter (
              ext:
              f.predicate {
                name = "x.${ext}";
                hasExt = e: e == ext;
              }
            ) exts;
          }
        else
          { file = rel f; };
    in
    map describe outputs.packages.x86_64-linux.jessy.craneArgs.src.fileset;
  # The image contents checks: their script and what it needs.
  contents = mapAttrs (
    _: c:
    mapAttrs (_: d: {
      inherit (d) name script;
      nativeBuildInputs = map (p: p.name) d.nativeBuildInputs;
    }) (intersectAttrs {
      jessy-core-image-contents = null;
      jessy-api-image-contents = null;
      jessy-test-image-contents = null;
    } c)
  ) outputs.checks;
  auditable = mapAttrs (_: c: c.jessy-auditable.script or null) outputs.checks;
  archives = mapAttrs (_: p: mapAttrs (_: a: { inherit (a) name script; }) (intersectAttrs {
    image = null;
    image-api = null;
    image-test = null;
  } p)) outputs.packages;
  bdd = mapAttrs (_: p: summarizeCrane p.jessy-bdd // { install = p.jessy-bdd.craneArgs.installPhaseCommand; }) outputs.packages;
  real = {
    crane = craneSrc != "";
    nix2container = n2cSrc != "";
  };
}
