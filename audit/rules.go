package audit

// Rule IDs. Each violation names exactly one.
const (
	RuleBaseLineage  = "MA-BASE-001"
	RuleLayerDiffID  = "MA-BASE-002"
	RuleBaseOutdated = "MA-BASE-003"
	RuleMalware      = "MA-MAL-001"
	RuleProtModified = "MA-PROT-001"
	RuleProtDeleted  = "MA-PROT-002"
	RuleProtRetyped  = "MA-PROT-003"
	RuleSetuid       = "MA-SUID-001"
	RuleSize         = "MA-SIZE-001"
	RuleHostileLayer = "MA-LAYER-001"
	RuleSpecialFile  = "MA-DEV-001"
)

// RuleInfo describes one rule for reports (SARIF's rule metadata).
type RuleInfo struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Short string `json:"short"`
	Full  string `json:"full"`
	// Ignorable is false for the integrity rules: an ignore file must not
	// make an unreadable or forged image pass.
	Ignorable bool `json:"ignorable"`
}

// Rules lists every rule, in report order.
var Rules = []RuleInfo{
	{RuleBaseLineage, "BaseLineage", "Image is not built on an official base",
		"The rootfs.diff_ids of an official base image must be an exact prefix of the image's rootfs.diff_ids.", true},
	{RuleLayerDiffID, "LayerDiffID", "Layer does not hash to its diff_id",
		"Every layer's uncompressed tar must hash to the diff_id the image config lists for it, and the manifest and config must list the same number of layers.", false},
	{RuleBaseOutdated, "BaseSuperseded", "Image is built on a superseded base",
		"The official base the image is built on has been superseded by a newer build; rebuild the image on the current one.", true},
	{RuleMalware, "MaliciousContent", "File matches a malicious-code signature",
		"A file in a layer added on top of the base matches a signature rule (EICAR test string, crypto-miner pool strings, reverse-shell one-liners, or a user rule). Files deleted by later layers are scanned too.", true},
	{RuleProtModified, "ProtectedModified", "Protected base file modified",
		"A file of the base under /bin /sbin /usr /lib /lib64, a listed file in /etc, or the toolkit in /home/work differs from the base in mode, owner, content, link target or xattrs.", true},
	{RuleProtDeleted, "ProtectedDeleted", "Protected base file deleted",
		"A whiteout or an opaque directory in an added layer hides protected base content.", true},
	{RuleProtRetyped, "ProtectedTypeChanged", "Protected base path changed type",
		"A protected base path has a different type in an added layer, e.g. a directory replaced by a symlink.", true},
	{RuleSetuid, "NewSetuid", "New root-owned setuid/setgid file or file capabilities",
		"An added layer holds a root-owned setuid or setgid file, a hardlink to one, or a file with a security.capability xattr, that the base did not have as it is.", true},
	{RuleSpecialFile, "NewDeviceOrFifo", "New device node or FIFO",
		"An added layer holds a character or block device node or a FIFO that the base does not have as it is (same path, type, device number, mode and owner). A device node opens the host's device of that number in the container. The audit fails closed.", false},
	{RuleSize, "ImageSize", "Image is too large",
		"The image's total uncompressed size is above the limit (9.5 GB by default).", true},
	{RuleHostileLayer, "HostileLayer", "Layer is malformed or hostile",
		"A layer has an absolute path, a .. component, a bad whiteout, a duplicate path, a hardlink whose target is not an earlier entry of the same layer, an unsupported entry, too many entries or bytes, a suspicious decompression ratio, or a corrupt gzip/zstd/tar stream. The audit fails closed.", false},
}

// ruleInfo returns the description of id.
func ruleInfo(id string) (RuleInfo, bool) {
	for _, r := range Rules {
		if r.ID == id {
			return r, true
		}
	}
	return RuleInfo{}, false
}
