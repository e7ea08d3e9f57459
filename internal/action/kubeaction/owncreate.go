package kubeaction

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"irctl.dev/irctl/internal/kube"
)

// errNotOurs: an object of the name irctl creates exists, and irctl did
// not make it for this step.
var errNotOurs = errors.New("an object of that name exists that irctl did not create for this incident; refusing to touch it")

// createOwn creates one object and never resends the create blindly: after
// an uncertain failure (a lost response, a 5xx, a 429) it reads the name
// back, and an object own accepts is the create having worked, returned
// with made true so that it stays in the undo record. An AlreadyExists on
// the first attempt is somebody else's create (made false) if own accepts
// it, errNotOurs if not. dry: a server dry run, whose creates leave
// nothing to read back.
func createOwn[T any](ctx context.Context, create, get func() (T, error), own func(T) bool, dry bool) (obj T, made bool, err error) {
	uncertain := false
	found := func(cur T) error {
		if !own(cur) {
			return errNotOurs
		}
		obj, made = cur, uncertain
		return nil
	}
	err = kube.Write(ctx, func() error {
		got, err := create()
		if err == nil {
			obj, made = got, true
			return nil
		}
		if apierrors.IsAlreadyExists(err) {
			cur, gerr := get()
			if gerr != nil {
				return gerr
			}
			return found(cur)
		}
		uncertain = uncertain || kube.Uncertain(err)
		return err
	}, func() (bool, error) {
		if dry {
			return false, nil
		}
		cur, err := get()
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if err := found(cur); err != nil {
			return false, err
		}
		return true, nil
	})
	return obj, made, err
}
