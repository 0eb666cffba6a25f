# make install / make uninstall.  Included from the top-level Makefile.
#
#   make install PREFIX=/usr DESTDIR=/tmp/pkg
#
# Programs go to $(SBINDIR) (administrator commands, manual section 8; vhotplug-event is the udev
# rule's RUN program). The udev rule, the systemd units and the tmpfiles snippet go where udev and
# systemd look for them, which does not
# follow PREFIX (udev does not read /usr/local): the directories come from pkg-config, can be
# overridden (UDEVDIR=, SYSTEMDUNITDIR=, TMPFILESDIR=), and are always below DESTDIR.
# /etc/vhotplug.conf is never written: an example goes to $(DOCDIR)/examples.
# vhotplug-helper.socket is enabled statically (a sockets.target.wants link next to the units, as
# systemd does for its own sockets): without it the rule's events reach nobody.
# Every man/*.N page is installed in section N (its .TH version set to $(VERSION)), every file of
# completion/ (named after its program) in BASHCOMPDIR: a new page or completion needs no line here.

DESTDIR        ?=
SBINDIR        ?= $(PREFIX)/sbin
DATADIR        ?= $(PREFIX)/share
MANDIR         ?= $(DATADIR)/man
DOCDIR         ?= $(DATADIR)/doc/vhotplug
SYSCONFDIR     ?= /etc
LOCALSTATEDIR  ?= /var
UDEVDIR        ?= $(or $(shell $(PKG_CONFIG) --variable=udevdir udev 2>/dev/null),/usr/lib/udev)
SYSTEMDUNITDIR ?= $(or $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null),/usr/lib/systemd/system)
TMPFILESDIR    ?= $(or $(shell $(PKG_CONFIG) --variable=tmpfilesdir systemd 2>/dev/null),/usr/lib/tmpfiles.d)
GENERATORDIR   ?= $(or $(shell $(PKG_CONFIG) --variable=systemdsystemgeneratordir systemd 2>/dev/null),/usr/lib/systemd/system-generators)
BINDIR         ?= $(PREFIX)/bin
BASHCOMPDIR    ?= $(DATADIR)/bash-completion/completions
INSTALL        ?= install

# Sources whose @sbindir@ / @sysconfdir@ are filled in at install time (the .in files).
# SYSCONFDIR is also compiled in (see the Makefile): the programs' default configuration is
# $(SYSCONFDIR)/vhotplug.conf.
SUBST = sed -e 's|@sbindir@|$(SBINDIR)|g' -e 's|@sysconfdir@|$(SYSCONFDIR)|g'

UNITS_IN      := vhotplug-helper.service vhotplug-reconcile.service vhotplug-reconcile@.service \
                 vhotplug-api.service
UNITS_PLAIN   := vhotplug-helper.socket vhotplug-reconcile.timer
# Left by versions that started one transient unit per event (systemd-run): removed.
OLD_DROPIN    := vhotplug-helper-.service.d/10-vhotplug.conf
MAN_PAGES     := $(notdir $(wildcard man/*.[1-8]))
COMPLETIONS   := $(notdir $(wildcard completion/*))
# vhotplugctl is the users' command; the others are the administrator's (sbin). The generator goes
# where systemd runs generators from.
SBIN_PROGS    := $(BUILD)/vhotplug-helper $(BUILD)/vhotplug-reconcile $(BUILD)/vhotplug-event $(BUILD)/vhotplug-api
BIN_PROGS     := $(BUILD)/vhotplugctl
DOCS          := $(wildcard README.md)
EXAMPLES      := $(wildcard examples/vhotplug.conf)

install: all
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(GENERATORDIR)
	$(INSTALL) -m 0755 $(SBIN_PROGS) $(DESTDIR)$(SBINDIR)/
	$(INSTALL) -m 0755 $(BIN_PROGS) $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0755 $(BUILD)/vhotplug-generator $(DESTDIR)$(GENERATORDIR)/
	$(INSTALL) -d -m 0755 $(DESTDIR)$(UDEVDIR)/rules.d
	$(SUBST) udev-rules/90-vhotplug.rules.in >$(DESTDIR)$(UDEVDIR)/rules.d/90-vhotplug.rules
	chmod 0644 $(DESTDIR)$(UDEVDIR)/rules.d/90-vhotplug.rules
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSTEMDUNITDIR)/sockets.target.wants
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$(OLD_DROPIN)
	rmdir $(DESTDIR)$(SYSTEMDUNITDIR)/$(dir $(OLD_DROPIN)) 2>/dev/null || :
	set -e; for u in $(UNITS_IN); do \
		$(SUBST) systemd/$$u.in >$(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
		chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$u; \
	done
	$(INSTALL) -m 0644 $(addprefix systemd/,$(UNITS_PLAIN)) $(DESTDIR)$(SYSTEMDUNITDIR)/
	ln -sf ../vhotplug-helper.socket $(DESTDIR)$(SYSTEMDUNITDIR)/sockets.target.wants/vhotplug-helper.socket
	$(INSTALL) -d -m 0755 $(DESTDIR)$(TMPFILESDIR)
	$(INSTALL) -m 0644 systemd/vhotplug.tmpfiles $(DESTDIR)$(TMPFILESDIR)/vhotplug.conf
	set -e; for m in $(MAN_PAGES); do \
		d=$(DESTDIR)$(MANDIR)/man$${m##*.}; $(INSTALL) -d -m 0755 $$d; \
		sed '1s/"vhotplug [^"]*"/"vhotplug $(VERSION)"/' man/$$m >$$d/$$m; chmod 0644 $$d/$$m; \
	done
	$(if $(COMPLETIONS),$(INSTALL) -d -m 0755 $(DESTDIR)$(BASHCOMPDIR))
	$(if $(COMPLETIONS),$(INSTALL) -m 0644 $(addprefix completion/,$(COMPLETIONS)) $(DESTDIR)$(BASHCOMPDIR)/)
	$(if $(DOCS),$(INSTALL) -d -m 0755 $(DESTDIR)$(DOCDIR))
	$(if $(DOCS),$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/)
	$(if $(EXAMPLES),$(INSTALL) -d -m 0755 $(DESTDIR)$(DOCDIR)/examples)
	$(if $(EXAMPLES),$(INSTALL) -m 0644 $(EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/)
	$(INSTALL) -d -m 0711 $(DESTDIR)$(LOCALSTATEDIR)/lib/vhotplug
	@# On a live system (no DESTDIR): create /run/vhotplug, tell udev and systemd, listen.
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-tmpfiles --create $(TMPFILESDIR)/vhotplug.conf || :; \
		systemctl daemon-reload || :; \
		systemctl start vhotplug-helper.socket || :; \
		udevadm control --reload || :; \
	fi

uninstall:
	rm -f $(addprefix $(DESTDIR)$(SBINDIR)/,$(notdir $(SBIN_PROGS)))
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(notdir $(BIN_PROGS)))
	rm -f $(DESTDIR)$(GENERATORDIR)/vhotplug-generator
	rm -f $(DESTDIR)$(UDEVDIR)/rules.d/90-vhotplug.rules
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl stop vhotplug-helper.socket vhotplug-helper.service || :; \
	fi
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/sockets.target.wants/vhotplug-helper.socket
	rmdir $(DESTDIR)$(SYSTEMDUNITDIR)/sockets.target.wants 2>/dev/null || :
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/$(OLD_DROPIN)
	rmdir $(DESTDIR)$(SYSTEMDUNITDIR)/$(dir $(OLD_DROPIN)) 2>/dev/null || :
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDUNITDIR)/,$(UNITS_IN) $(UNITS_PLAIN))
	rm -f $(DESTDIR)$(TMPFILESDIR)/vhotplug.conf
	set -e; for m in $(MAN_PAGES); do rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$$m; done
	rm -f $(addprefix $(DESTDIR)$(BASHCOMPDIR)/,$(COMPLETIONS))
	rm -rf $(DESTDIR)$(DOCDIR)
	@# The state directory holds the attachment history: kept unless empty.
	rmdir $(DESTDIR)$(LOCALSTATEDIR)/lib/vhotplug 2>/dev/null || :
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl daemon-reload || :; \
		udevadm control --reload || :; \
	fi

.PHONY: install uninstall
